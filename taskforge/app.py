"""The application object: settings + registry + producer client, and the default app."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from taskforge.call import Call, Periodic
from taskforge.celery_compat import cron_hint
from taskforge.client import Client
from taskforge.cron import CatchUp, CronSchedule, coerce_catch_up
from taskforge.dispatch import AppDispatcher
from taskforge.errors import ConfigurationError, EnqueueError
from taskforge.job import JobPriority
from taskforge.limits.spec import rate_limit_spec
from taskforge.middleware import Middleware
from taskforge.options import TaskOptions, coerce_priority
from taskforge.policy import ExceptionTypes
from taskforge.registry import Registry
from taskforge.settings import Settings
from taskforge.task import Task

if TYPE_CHECKING:  # imported where used: a worker or a producer never loads the test bed
    from taskforge.testing import Testbed
    from taskforge.workflow import WorkflowClient

P = ParamSpec("P")
R = TypeVar("R")


class Taskforge(AppDispatcher):
    """One taskforge application: where tasks register and jobs are sent.

    Creating it connects to nothing. Settings are read from the environment on first use unless
    given (``Taskforge(Settings.from_env(redis_url=...))``) or changed with :meth:`configure`.
    """

    def __init__(self, settings: Settings | None = None, *, registry: Registry | None = None):
        self._settings = settings
        self.registry = registry if registry is not None else Registry()
        self._client: Client | None = None
        self._workflows: WorkflowClient | None = None
        #: Registered middleware, in order (see :meth:`add_middleware`).
        self.middleware: list[Middleware] = []

    def add_middleware(self, middleware: Middleware) -> Middleware:
        """Register ``middleware`` for this app's producers and workers; returns it.

        Raises:
            ConfigurationError: it is not a :class:`~taskforge.middleware.Middleware`.
        """
        if not isinstance(middleware, Middleware):
            raise ConfigurationError(
                f"{middleware!r} is not a taskforge Middleware; subclass taskforge.Middleware"
            )
        self.middleware.append(middleware)
        return middleware

    @property
    def settings(self) -> Settings:
        """The settings in force (from the environment when none were given)."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def configure(self, settings: Settings | None = None, **overrides: Any) -> Settings:
        """Replace the settings (``app.configure(redis_url="redis://...")``); drops open clients."""
        base = settings if settings is not None else self.settings
        self._settings = base.model_copy(update=overrides) if overrides else base
        if self._client is not None:
            self._client.close()
            self._client = None
        self._workflows = None
        return self._settings

    @property
    def client(self) -> Client:
        """The producer client (created on first use)."""
        if self._client is None:
            self._client = Client(self.settings, registry=self.registry, middleware=self.middleware)
        return self._client

    @contextmanager
    def testing(
        self,
        *,
        eager: bool = True,
        skip_delays: bool = True,
        concurrency: int = 1,
        redis_url: str = "memory://",
    ) -> Iterator[Testbed]:
        """Run this app on a private test server for the block: ``with app.testing() as bed:``.

        ``eager``: each ``.delay()`` runs the job (and the jobs it sends) through a real burst
        worker before it returns. ``skip_delays``: scheduled jobs and retry backoff are due at
        once. ``redis_url``: ``memory://`` (a fresh embedded server) or a real Redis, with a key
        prefix of the block's own. The app's settings and client come back afterwards.
        See :mod:`taskforge.testing`.
        """
        from taskforge.testing import Testbed, testing_settings

        bed = Testbed(
            testing_settings(self.settings, redis_url),
            self.registry,
            eager=eager,
            skip_delays=skip_delays,
            concurrency=concurrency,
        )
        saved = self._settings, self._client
        self._settings, self._client = bed.settings, bed.client
        try:
            yield bed
        finally:
            self._settings, self._client = saved
            bed.close()

    def call(self, task_name: str, *args: Any, **kwargs: Any) -> Call:
        """A call of a task known only by name (no import needed), for :meth:`enqueue_many`.

        It carries the default options (queue ``default``, priority ``normal``, the default
        retry policy); the worker that registered the name runs it.
        """
        return Call(task_name, args, kwargs, TaskOptions(name=task_name).checked())

    def periodic(
        self,
        task: Task[P, Any],
        *,
        cron: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        timezone: str = "UTC",
        catch_up: CatchUp | str = CatchUp.ONCE,
    ) -> Periodic:
        """Enqueue ``task(*args, **kwargs)`` on a cron schedule, from every worker of its queue.

        Each tick becomes one job with id ``cron:<name>:<tick_ms>``, claimed atomically, so it
        runs once however many workers run. ``name`` defaults to the task's name (give one when
        a task is periodic with several argument sets). ``catch_up`` says what a worker does with
        ticks missed while none ran: ``"skip"`` them, run ``"once"`` (default) or run ``"all"``.

        Raises:
            ConfigurationError: bad cron expression, time zone, policy or name.
            EnqueueError: the arguments do not fit the task.
        """
        if not isinstance(cron, str):  # Celery's run_every=10.0 / timedelta habit
            raise ConfigurationError(cron_hint(cron))
        call = task.s(*args, **(kwargs or {}))
        if call.partial and call.fits is not None:  # a workflow's partial signature: not here
            raise EnqueueError(
                f"bad arguments for task {task.name!r}: {call.fits(call.args, call.kwargs)}"
            )
        schedule = CronSchedule(cron, timezone)
        entry = Periodic(name or task.name, call, schedule, coerce_catch_up(catch_up))
        self.registry.add_periodic(entry)
        return entry

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: JobPriority | str = JobPriority.NORMAL,
        max_retries: int | None = 3,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes = (),
        retry_backoff: float = 60.0,
        retry_backoff_cap: float = 3600.0,
        retry_jitter: bool = False,
        timeout: float | None = None,
        rate_limit: str | int | None = None,
        concurrency: int | None = None,
        soft_timeout: float | None = None,
        ignore_result: bool = False,
        result_ttl: int | None = None,
        pool: str | None = None,
        cron: str | None = None,
        timezone: str = "UTC",
        catch_up: CatchUp | str = CatchUp.ONCE,
    ) -> _Decorator: ...
    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: JobPriority | str = JobPriority.NORMAL,
        max_retries: int | None = 3,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes = (),
        retry_backoff: float = 60.0,
        retry_backoff_cap: float = 3600.0,
        retry_jitter: bool = False,
        timeout: float | None = None,
        rate_limit: str | int | None = None,
        concurrency: int | None = None,
        soft_timeout: float | None = None,
        ignore_result: bool = False,
        result_ttl: int | None = None,
        pool: str | None = None,
        cron: str | None = None,
        timezone: str = "UTC",
        catch_up: CatchUp | str = CatchUp.ONCE,
    ) -> Any:
        """Register a function (async or sync) as a task: ``@app.task`` or ``@app.task(...)``.

        ``name`` defaults to ``module.function``. ``retry_backoff`` (s) is the base of the
        exponential backoff (retry n waits ``retry_backoff * 2**(n-1)``, capped at
        ``retry_backoff_cap``); ``timeout`` (s) bounds one attempt. ``max_retries=None`` retries
        forever; ``retry_on``/``dont_retry_on`` (tuples of exception classes) choose which
        failures retry at all (see :mod:`taskforge.policy`). ``soft_timeout`` (s, shorter than
        ``timeout``) raises ``SoftTimeoutExceeded`` in the task; ``ignore_result`` stores no
        result; ``result_ttl`` (s) keeps this task's succeeded records that long instead of
        ``Settings.result_ttl_s``. ``pool`` (``"process"`` or ``"thread"``, sync tasks only)
        runs the task there whatever the worker's ``--pool``.

        ``cron`` (5 fields, or 6 with seconds last) also makes it periodic: one job per tick, in
        ``timezone``, with ``catch_up`` (``"skip"``, ``"once"``, ``"all"``) for ticks missed while
        no worker ran; see :meth:`periodic`. ``rate_limit`` (``"100/m"``, ``"10/s"``, or ``10``:
        per second) and ``concurrency`` cap its job starts per window and its running jobs,
        across all workers.

        Raises:
            ConfigurationError: an option cannot work (negative timeout, unknown priority, ...).
        """
        prio = coerce_priority(priority)

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            opts = TaskOptions(
                name=name or f"{func.__module__}.{func.__qualname__}",
                queue=queue,
                priority=prio,
                max_retries=max_retries,
                retry_on=retry_on,
                dont_retry_on=dont_retry_on,
                retry_backoff=retry_backoff,
                retry_backoff_cap=retry_backoff_cap,
                retry_jitter=retry_jitter,
                timeout=timeout,
                rate_limit=rate_limit_spec(rate_limit),
                concurrency=concurrency,
                soft_timeout=soft_timeout,
                ignore_result=ignore_result,
                result_ttl=result_ttl,
                pool=pool,
            )
            t: Task[Any, Any] = Task(func, opts, self)
            self.registry.add(t)
            if cron is not None:
                self.periodic(t, cron=cron, timezone=timezone, catch_up=catch_up)
            return t

        if fn is not None:
            return register(fn)
        return register


class _Decorator:
    """Type of ``@app.task(...)``: applied to a function, gives its Task."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any]:
        raise NotImplementedError  # typing only; task() returns a plain function


#: The application behind ``from taskforge import task``.
default_app = Taskforge()
#: ``@task`` on the default application.
task = default_app.task
#: ``periodic(task, cron=..., args=...)`` on the default application.
periodic = default_app.periodic

__all__ = ["Taskforge", "default_app", "periodic", "task"]
