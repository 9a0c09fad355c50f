"""The soft time limit: ``SoftTimeoutExceeded`` raised *inside* a task before its hard timeout.

An async task gets it at the ``await`` it is suspended in: the limit cancels the task's asyncio
task with a marker, and the wrapper that drives the task's coroutine turns that one cancellation
into ``SoftTimeoutExceeded`` (``Task.uncancel`` takes the request back, so cancel scopes above
never see it). Every other cancellation passes through untouched. A sync task gets it in its
thread at its next Python bytecode, like the hard timeout's ``JobInterrupted``, but as an
``Exception``: ``except SoftTimeoutExceeded`` (or ``except Exception``) catches it, and the task
may finish, clean up, or raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from taskforge.errors import SoftTimeoutExceeded

_MARK = "taskforge: soft time limit"


class SoftLimited:
    """Awaitable running ``coro`` with ``SoftTimeoutExceeded`` raised into it after ``soft_s``."""

    def __init__(self, coro: Coroutine[Any, Any, Any], soft_s: float):
        self._coro = coro
        self._soft_s = soft_s
        self._fired = False

    def __await__(self) -> Generator[Any, Any, Any]:
        task = asyncio.current_task()
        if task is None:  # not on an asyncio task: no way to interrupt, run it plainly
            return (yield from self._coro.__await__())
        timer = asyncio.get_running_loop().call_later(self._soft_s, self._fire, task)
        try:
            return (yield from self._drive(task))
        finally:
            timer.cancel()
            self._coro.close()

    def _fire(self, task: asyncio.Task[Any]) -> None:
        self._fired = True
        task.cancel(_MARK)

    def _drive(self, task: asyncio.Task[Any]) -> Generator[Any, Any, Any]:
        send: Any = None
        throw: BaseException | None = None
        while True:
            try:
                step = self._coro.throw(throw) if throw is not None else self._coro.send(send)
            except StopIteration as stop:
                return stop.value
            send, throw = None, None
            try:
                send = yield step
            except asyncio.CancelledError as exc:
                throw = self._translate(task, exc)
            except BaseException as exc:  # anything else thrown in goes to the task unchanged
                throw = exc

    def _translate(self, task: asyncio.Task[Any], exc: asyncio.CancelledError) -> BaseException:
        if self._fired and exc.args == (_MARK,):
            self._fired = False
            task.uncancel()
            return SoftTimeoutExceeded(f"soft time limit of {self._soft_s}s exceeded")
        return exc


def arm_thread(interrupt: Callable[[type[BaseException]], None], soft_s: float) -> asyncio.Handle:
    """Raise ``SoftTimeoutExceeded`` in a sync task's thread after ``soft_s`` (cancel the
    returned handle when the call ends)."""
    return asyncio.get_running_loop().call_later(soft_s, interrupt, SoftTimeoutExceeded)


__all__ = ["SoftLimited", "arm_thread"]
