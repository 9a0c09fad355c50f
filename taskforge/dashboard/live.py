"""Live updates: one pub/sub subscription per dashboard process, fanned out to pages.

The hub holds one pub/sub connection whatever the number of open pages, subscribed to
``job:updates`` (every job transition) and ``workflow:events`` (every workflow transition).
Each page's Server-Sent Events stream gets the job events that match its filters, the events of
the workflows it names, and, at most once a second while jobs move, a fresh overview (queue
counts) computed once for all pages. A page that reads too slowly loses events (pub/sub does
not replay either), never the dashboard.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from taskforge.admin import AsyncAdmin
from taskforge.errors import TaskforgeError
from taskforge.workflow import WORKFLOW_EVENTS

log = logging.getLogger(__name__)

#: Events a page may fall behind by before it loses some.
PAGE_BUFFER = 256
#: Least time between two overview pushes (s): bounds Redis work under heavy traffic.
OVERVIEW_EVERY_S = 1.0
#: A comment line this often keeps proxies from closing an idle stream (s).
KEEPALIVE_S = 15.0


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which job events a page wants (empty: all).

    ``workflows`` keeps the job events of those workflows' members, and is the only way a
    page gets workflow events (a workflow page names its own).
    """

    queues: frozenset[str] = frozenset()
    tasks: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    jobs: frozenset[str] = frozenset()
    workflows: frozenset[str] = frozenset()

    def matches(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` passes every filter set (a task filter may be a glob)."""
        task = str(event.get("task", ""))
        return (
            (not self.queues or event.get("queue") in self.queues)
            and (not self.tasks or any(fnmatch.fnmatchcase(task, t) for t in self.tasks))
            and (not self.statuses or event.get("status") in self.statuses)
            and (not self.jobs or event.get("job_id") in self.jobs)
            and (not self.workflows or event.get("workflow_id") in self.workflows)
        )


@dataclass(eq=False)
class _Page:
    flt: EventFilter
    send: MemoryObjectSendStream[tuple[str, str]]
    dropped: int = 0


@dataclass(eq=False)
class Hub:
    """Fan-out of job events and overview pushes to every connected page."""

    admin: AsyncAdmin
    overview: Callable[[], Awaitable[dict[str, Any]]]
    pages: set[_Page] = field(default_factory=set)
    running: bool = False
    _dirty: anyio.Event | None = None  # made in run(): an event belongs to its loop
    _subscribed: anyio.Event | None = None

    @property
    def listening(self) -> bool:
        """True once the subscription is confirmed: events published from then on arrive."""
        return self._subscribed is not None and self._subscribed.is_set()

    async def run(self) -> None:
        """Pump events and overview pushes until cancelled."""
        self.running = True
        self._dirty = anyio.Event()
        self._subscribed = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump)
                tg.start_soon(self._push_overviews)
        finally:
            self.running = False
            self._subscribed = None

    async def _pump(self) -> None:
        channel = self.admin.settings.events_channel
        channels = [c for c in (channel, WORKFLOW_EVENTS) if c]
        subscribed = self._subscribed
        async for name, data in self.admin.broker.subscribe(*channels, ready=subscribed):
            try:
                event = json.loads(data)
            except ValueError:
                continue  # not one of ours
            if not isinstance(event, dict):
                continue
            if name == WORKFLOW_EVENTS and name != channel:
                self._workflow_event(event, data)
                continue
            for page in list(self.pages):
                if page.flt.matches(event):
                    self._offer(page, "job", data)
            if self._dirty is not None:
                self._dirty.set()

    def _workflow_event(self, event: dict[str, Any], data: str) -> None:
        # Only to the pages of that workflow: ids are random, so another prefix's workflows
        # (the channel is shared) never match.
        workflow_id = event.get("workflow_id")
        for page in list(self.pages):
            if workflow_id in page.flt.workflows:
                self._offer(page, "workflow", data)

    async def _push_overviews(self) -> None:
        while True:
            assert self._dirty is not None  # run() made it
            await self._dirty.wait()
            self._dirty = anyio.Event()
            if self.pages:
                try:
                    text = json.dumps(await self.overview())
                except TaskforgeError as exc:  # a Redis blip must not end the live feed
                    log.warning("live overview failed: %s", exc)
                else:
                    for page in list(self.pages):
                        self._offer(page, "overview", text)
            await anyio.sleep(OVERVIEW_EVERY_S)

    def _offer(self, page: _Page, kind: str, data: str) -> None:
        try:
            page.send.send_nowait((kind, data))
        except anyio.WouldBlock:
            page.dropped += 1

    async def stream(self, flt: EventFilter) -> AsyncIterator[str]:
        """Server-Sent Events text for one page, until it disconnects."""
        send, receive = anyio.create_memory_object_stream[tuple[str, str]](PAGE_BUFFER)
        page = _Page(flt, send)
        self.pages.add(page)
        try:
            yield "retry: 2000\n: connected\n\n"
            async for chunk in _frames(receive):
                yield chunk
        finally:
            self.pages.discard(page)
            send.close()
            receive.close()


async def _frames(receive: MemoryObjectReceiveStream[tuple[str, str]]) -> AsyncIterator[str]:
    while True:
        with anyio.move_on_after(KEEPALIVE_S) as idle:
            kind, data = await receive.receive()
        if idle.cancel_called:
            yield ": keepalive\n\n"
            continue
        yield f"event: {kind}\ndata: {data}\n\n"


__all__ = ["KEEPALIVE_S", "EventFilter", "Hub"]
