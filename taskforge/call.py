"""Calls: one call of a task ready to become a job, and a call enqueued on a cron schedule."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from taskforge.canvas import Canvas, WorkflowDispatcher
from taskforge.cron.schedule import CatchUp, CronSchedule
from taskforge.errors import ConfigurationError
from taskforge.handle import JobHandle
from taskforge.options import TaskOptions


@dataclass(frozen=True, slots=True)
class Call(Canvas):
    """One call of a task, ready to become a job: ``add.s(2, 3)``; also a workflow's leaf.

    ``delay_s`` or ``run_at`` (timezone-aware) make it a scheduled job. ``partial`` marks
    arguments that fit only with one more in front (the previous step's value, in a workflow);
    ``immutable`` (``.si()``) ignores the previous value. ``fits`` tells why arguments do not
    fit the function ('' when they do), for checks at a workflow's ``.delay()``.
    """

    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: TaskOptions
    delay_s: float = 0.0
    run_at: datetime | None = None
    immutable: bool = False
    partial: bool = False
    callbacks: tuple[Call, ...] = ()
    errbacks: tuple[Call, ...] = ()
    dispatcher: WorkflowDispatcher | None = field(default=None, compare=False, repr=False)
    fits: Callable[[tuple[Any, ...], dict[str, Any]], str] | None = field(
        default=None, compare=False, repr=False
    )


_PERIODIC_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,150}$")


@dataclass(frozen=True, slots=True)
class Periodic:
    """A call enqueued on a cron schedule: one job per tick, with id ``cron:<name>:<tick_ms>``.

    Register with ``@task(cron=...)`` or ``app.periodic(task, cron=..., args=...)``.
    """

    name: str
    call: Call
    schedule: CronSchedule
    catch_up: CatchUp = CatchUp.ONCE

    def __post_init__(self) -> None:
        if not _PERIODIC_NAME.match(self.name):
            raise ConfigurationError(
                f"invalid periodic name {self.name!r}: use 1-150 letters, digits or '_.:-'"
            )

    def job_id(self, tick_ms: int) -> str:
        """The deterministic id of this periodic's job for one tick."""
        return f"cron:{self.name}:{tick_ms}"


class Dispatcher(WorkflowDispatcher, Protocol):
    """Turns calls into jobs (implemented by :class:`~taskforge.dispatch.AppDispatcher`)."""

    def submit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]: ...
    async def asubmit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]: ...


__all__ = ["Call", "Dispatcher", "Periodic"]
