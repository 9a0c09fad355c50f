"""The shapes of a workflow: chain, group and chord of calls. Pure data: nothing here sends.

A :class:`~taskforge.call.Call` (``add.s(1, 2)``) is the leaf. ``chain(a, b, c)`` runs one after
the other, each step receiving the previous step's result as its first argument (unless the step
is immutable, ``add.si(...)``); ``group(a, b)`` runs side by side and its value is the list of
its members' values; ``chord(group, callback)`` runs the callback with that list. They nest.
``delay()`` on any of them writes the whole workflow once (see :mod:`taskforge.workflow`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from taskforge.errors import WorkflowError

if TYPE_CHECKING:
    from taskforge.call import Call
    from taskforge.workflow import WorkflowHandle

C = TypeVar("C", bound="Canvas")


class WorkflowDispatcher(Protocol):
    """Sends a whole workflow (implemented by :class:`~taskforge.app.Taskforge`)."""

    def submit_workflow(
        self,
        canvas: Canvas,
        *,
        workflow_id: str | None = None,
        when: datetime | timedelta | float | None = None,
    ) -> WorkflowHandle: ...

    async def asubmit_workflow(
        self,
        canvas: Canvas,
        *,
        workflow_id: str | None = None,
        when: datetime | timedelta | float | None = None,
    ) -> WorkflowHandle: ...


class Canvas:
    """Anything that can be composed and sent as a workflow: a call, chain, group or chord."""

    __slots__ = ()

    callbacks: tuple[Call, ...]
    errbacks: tuple[Call, ...]

    def __or__(self, other: Canvas) -> Canvas:
        """``a | b``: a chain; ``group(...) | callback`` is a chord."""
        if isinstance(self, Group) and not isinstance(other, Group | Chain | Chord):
            return Chord(self, other)
        return chain(self, other)

    def on_success(self: C, callback: Call) -> C:
        """Also run ``callback`` once this succeeds, with its value as the first argument
        (unless the callback is immutable, ``.si()``)."""
        return replace(self, callbacks=(*self.callbacks, _leaf(callback, "on_success")))  # type: ignore[type-var]

    def on_failure(self: C, callback: Call) -> C:
        """Also run ``callback`` if this fails, with ``(job_id, error)`` of the failed member
        first: ``error`` is ``"Type: message"``."""
        return replace(self, errbacks=(*self.errbacks, _leaf(callback, "on_failure")))  # type: ignore[type-var]

    def delay(self, *, workflow_id: str | None = None) -> WorkflowHandle:
        """Send the whole workflow now; returns its handle.

        ``workflow_id`` (letters, digits, ``_.-``) makes the call safe to repeat: a second
        ``delay`` with the same id writes nothing and returns the first one's handle.

        Raises:
            WorkflowError: the shape cannot run (empty chain, chord without callback, a partial
                call with no previous step, arguments that do not fit, a cycle, too many
                members). Nothing is written.
            EnqueueError: a call's arguments cannot be encoded.
        """
        return _dispatcher(self).submit_workflow(self, workflow_id=workflow_id)

    async def adelay(self, *, workflow_id: str | None = None) -> WorkflowHandle:
        """Async :meth:`delay`."""
        return await _dispatcher(self).asubmit_workflow(self, workflow_id=workflow_id)

    def schedule(
        self, when: datetime | timedelta | float, *, workflow_id: str | None = None
    ) -> WorkflowHandle:
        """Send the workflow now, its first steps to start at ``when`` (aware datetime,
        timedelta or seconds)."""
        return _dispatcher(self).submit_workflow(self, workflow_id=workflow_id, when=when)

    async def aschedule(
        self, when: datetime | timedelta | float, *, workflow_id: str | None = None
    ) -> WorkflowHandle:
        """Async :meth:`schedule`."""
        return await _dispatcher(self).asubmit_workflow(self, workflow_id=workflow_id, when=when)


@dataclass(frozen=True, slots=True)
class Chain(Canvas):
    """Steps run one after another; each gets the previous step's value first."""

    steps: tuple[Canvas, ...]
    callbacks: tuple[Call, ...] = ()
    errbacks: tuple[Call, ...] = ()

    def __repr__(self) -> str:
        return "chain(" + ", ".join(map(repr, self.steps)) + ")"


@dataclass(frozen=True, slots=True)
class Group(Canvas):
    """Members run side by side; the group's value is the list of their values, in order."""

    members: tuple[Canvas, ...]
    callbacks: tuple[Call, ...] = ()
    errbacks: tuple[Call, ...] = ()

    def __repr__(self) -> str:
        return "group(" + ", ".join(map(repr, self.members)) + ")"


@dataclass(frozen=True, slots=True)
class Chord(Canvas):
    """A group (the header) whose list of values goes to one callback (the body), once."""

    header: Group
    body: Canvas
    callbacks: tuple[Call, ...] = ()
    errbacks: tuple[Call, ...] = ()

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def chain(*steps: Canvas | Iterable[Canvas]) -> Chain:
    """``chain(add.s(1, 2), add.s(3), mul.s(10))``: run the steps in order, feeding each the
    previous value. Nested chains are flattened; a single iterable argument is its steps."""
    flat: list[Canvas] = []
    for step in _items(steps):
        flat.extend(step.steps if isinstance(step, Chain) and not _hooked(step) else [step])
    return Chain(tuple(flat))


def group(*members: Canvas | Iterable[Canvas]) -> Group:
    """``group(add.s(i, i) for i in range(10))``: run the members side by side."""
    return Group(tuple(_items(members)))


def chord(header: Group | Iterable[Canvas], body: Canvas | None = None) -> Chord:
    """``chord(group(...), total.s())``: run ``body`` once with the list of the header's values.

    Raises:
        WorkflowError: no callback (``body``) given.
    """
    if body is None:
        raise WorkflowError(
            "a chord needs a callback: chord(group(...), callback.s()); use group(...) alone "
            "when nothing should run after the members"
        )
    head = header if isinstance(header, Group) else group(header)
    return Chord(head, body)


def _items(given: tuple[Any, ...]) -> list[Canvas]:
    if len(given) == 1 and not isinstance(given[0], Canvas):
        given = tuple(given[0])
    for item in given:
        if not isinstance(item, Canvas):
            raise WorkflowError(
                f"{item!r} is not a signature; write task.s(...) (or task.si(...)) for each step"
            )
    return list(given)


def _hooked(canvas: Canvas) -> bool:
    return bool(canvas.callbacks or canvas.errbacks)


def _leaf(callback: Any, hook: str) -> Call:
    if not isinstance(callback, Canvas) or isinstance(callback, Chain | Group | Chord):
        raise WorkflowError(f"{hook} takes one signature (task.s(...)), got {callback!r}")
    return callback  # type: ignore[return-value]


def _dispatcher(canvas: Canvas) -> WorkflowDispatcher:
    empty = True
    for leaf in walk_calls(canvas):
        empty = False
        found: WorkflowDispatcher | None = getattr(leaf, "dispatcher", None)
        if found is not None:
            return found
    if empty:
        raise WorkflowError(
            f"{type(canvas).__name__.lower()} has no steps: a workflow needs at least one "
            "member, e.g. chain(task.s(...), ...)"
        )
    raise WorkflowError(
        "this workflow has no task of an app (calls made with app.call(...)); send it with "
        "app.submit_workflow(workflow)"
    )


def walk_calls(canvas: Canvas) -> Iterable[Call]:
    """Every call in the workflow, callbacks included, depth first."""
    stack: list[Canvas] = [canvas]
    seen = 0
    while stack and seen < 1_000_000:
        seen += 1
        item = stack.pop()
        stack.extend(reversed((*item.callbacks, *item.errbacks)))
        if isinstance(item, Chain):
            stack.extend(reversed(item.steps))
        elif isinstance(item, Group):
            stack.extend(reversed(item.members))
        elif isinstance(item, Chord):
            stack.extend([item.body, item.header])
        else:
            yield item  # type: ignore[misc]


__all__ = [
    "Canvas",
    "Chain",
    "Chord",
    "Group",
    "WorkflowDispatcher",
    "chain",
    "chord",
    "group",
    "walk_calls",
]
