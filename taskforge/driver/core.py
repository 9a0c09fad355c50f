"""The one driver core: what each request kind sends, for both the sync and the async driver.

:class:`Core` turns a request into a *plan*: a generator that yields :data:`Step` s (primitive
I/O on the client: a command, a pipeline, a registered script, ...) and receives their replies,
or has their Redis errors thrown in. The drivers are thin loops that perform each step, one
blocking, one with ``await``; a call the hot lane carries (:meth:`Core.hot`) they send on it
before any plan, and take :meth:`Core.registered` when it cannot. Everything else (the wire
encoding, ``EVALSHA`` with its ``NOSCRIPT`` fallback, the ``WAIT`` of a durable write, the
wake-then-fetch pipeline, the error messages) is written once here.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from taskforge.driver.connection import AsyncRedis, SyncRedis, is_cluster, routable
from taskforge.driver.requests import (
    Arg,
    Batch,
    Command,
    EveryPrimary,
    Replicated,
    Request,
    ScriptCall,
    Scripts,
    WakeThenCall,
)
from taskforge.errors import (
    BrokerConnectionError,
    BrokerError,
    BrokerOutOfMemoryError,
    NotReplicatedError,
)
from taskforge.settings import Settings

#: How long the marker a durable write sets lives, ms.
MARKER_TTL_MS = 60_000


@dataclass(frozen=True, slots=True)
class Exec:
    """``client.execute_command(*args, **target)``."""

    args: tuple[Any, ...]
    target: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pipe:
    """A non-transactional pipeline of ``(args, options)`` commands; the reply is their list."""

    commands: Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Invoke:
    """Call a registered redis-py script object (it loads the script on ``NOSCRIPT``)."""

    script: Any
    keys: Sequence[str | bytes]
    args: Sequence[Arg | bytes]


@dataclass(frozen=True, slots=True)
class OnPrimaries:
    """One command to every primary; the reply is ``{node: reply}``."""

    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class NodeOf:
    """The options that send a keyless command to the node serving ``key`` (the reply)."""

    key: str


Step = Exec | Pipe | Invoke | OnPrimaries | NodeOf
#: A request's plan: yields steps, receives their replies, returns the request's reply.
Plan = Generator[Step, Any, Any]


class Core:
    """What each request sends, shared by :class:`~taskforge.driver.sync_driver.SyncDriver`
    and :class:`~taskforge.driver.async_driver.AsyncDriver`."""

    def __init__(
        self, settings: Settings, client: SyncRedis | AsyncRedis, scripts: Scripts, *, hot: bool
    ):
        self.settings = settings
        self.client = client
        self.scripts = scripts
        self.hot_lane = hot
        self.one_connection = one_connection(client, settings)
        self._registered: dict[str, Any] = {}

    def plan(self, request: Request) -> Plan:
        """The steps that send ``request``; returns its reply."""
        if isinstance(request, ScriptCall):  # the hot lane's calls went first: see :meth:`hot`
            return (yield from self.registered(request))
        if isinstance(request, Command):
            return (yield Exec(routable(self.client, tuple(wire(request.args)))))
        if isinstance(request, Replicated):
            return (yield from self._replicated(request))
        if isinstance(request, WakeThenCall):
            return (yield from self._wake_then_call(request))
        if isinstance(request, EveryPrimary):
            return (yield OnPrimaries(routable(self.client, request.command.args)))
        assert isinstance(request, Batch)
        return (yield Pipe([(tuple(wire(c.args)), {}) for c in request.commands]))

    def evalsha(self, call: ScriptCall) -> tuple[Arg | bytes, ...]:
        """``call`` as one packed ``EVALSHA`` command."""
        sha, count = self.scripts.sha(call.name), len(call.keys)
        return ("EVALSHA", sha, count, *wire(call.keys), *wire(call.args))

    def hot(self, request: Request) -> tuple[Arg | bytes, ...] | None:
        """The packed ``EVALSHA`` of a request the hot lane carries; None for any other.

        The drivers send it on the lane before building a plan (a ``.delay()`` is this one
        call); when the lane cannot take it, :meth:`registered` is the way on.
        """
        if self.hot_lane and type(request) is ScriptCall and request.name in self.scripts.hot:
            return self.evalsha(request)
        return None

    def registered(self, call: ScriptCall) -> Plan:
        """``call`` through redis-py's script object (pooled, retried; loads it on NOSCRIPT)."""
        script = self._registered.get(call.name)
        if script is None:
            source = self.scripts.source(call.name, memory=self.settings.is_memory)
            script = self._registered[call.name] = self.client.register_script(source)
        return (yield Invoke(script, wire_keys(call.keys), wire(call.args)))

    def _wake_then_call(self, request: WakeThenCall) -> Plan:
        call = request.call
        pop: tuple[Arg, ...] = ("BZPOPMIN", *request.wake_keys, request.timeout_s)
        if not self.one_connection:
            yield from self.plan(Command(pop))
            return (yield from self.plan(call))
        try:
            _, reply = yield Pipe([(pop, {}), (self.evalsha(call), {})])
        except redis.exceptions.NoScriptError:
            # The server lost its scripts (a restart): the pop happened, the script did not.
            return (yield from self.plan(call))
        return reply

    def _replicated(self, request: Replicated) -> Plan:
        # One pipeline: WAIT counts replicas holding *this connection's* writes.
        call, name = request.call, request.call.name
        target = yield NodeOf(call.keys[0])
        for verb, first in (
            ("EVALSHA", self.scripts.sha(name)),
            ("EVAL", self.scripts.sources[name]),
        ):
            commands = [
                ((verb, first, len(call.keys), *call.keys, *call.args), {}),
                (("SET", request.marker, "1", "PX", MARKER_TTL_MS), {}),
                (("WAIT", request.replicas, request.timeout_ms), target),
            ]
            try:
                reply, _, acked = yield Pipe(commands)
            except redis.exceptions.NoScriptError:
                continue  # EVAL loads it; nothing was written
            return _check_replicas(reply, int(acked), request)
        raise AssertionError("unreachable: EVAL never answers NOSCRIPT")


def one_connection(client: SyncRedis | AsyncRedis, settings: Settings) -> bool:
    """Whether requests pipelined on one connection all reach the one server that holds the
    keys (not a cluster's several; not the embedded server, whose pipelines never block)."""
    return not (is_cluster(client) or settings.is_memory)


def _check_replicas(reply: Any, acked: int, request: Replicated) -> Any:
    if acked < request.replicas:
        raise NotReplicatedError(
            f"{request.call.name} was written on the primary but {acked} of {request.replicas}"
            f" replica(s) acknowledged it within {request.timeout_ms} ms: a failover now could"
            " lose it; check the replicas, or raise TASKFORGE_DURABLE_TIMEOUT"
        )
    return reply


def wire(args: Sequence[Arg]) -> list[Arg | bytes]:
    """``args`` for the wire: a string holding bytes that were not UTF-8 when Redis sent them
    (decoded with ``surrogateescape``) goes back as those bytes. redis-py's own encoder would
    manage, but hiredis's packer refuses lone surrogates. Envelopes are ASCII: the check is
    ``isascii()`` for nearly every argument."""
    return [_raw(a) if isinstance(a, str) and not a.isascii() else a for a in args]


def wire_keys(keys: Sequence[str]) -> list[str | bytes]:
    """:func:`wire` for key names."""
    return [_raw(k) if not k.isascii() else k for k in keys]


def _raw(text: str) -> str | bytes:
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def wrap_error(exc: redis.RedisError, settings: Settings) -> BrokerError:
    """The taskforge error that says what went wrong for a redis-py error."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return BrokerConnectionError(
            f"cannot reach Redis at {settings.masked_url()}: {settings.scrub(str(exc))}; check"
            " REDIS_URL and that the server is running"
        )
    text = str(exc)
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or "maxmemory" in text:
        return BrokerOutOfMemoryError(
            f"Redis is out of memory (used memory > maxmemory): {exc}; the refused command wrote"
            " nothing. Free memory (purge dead jobs, shorten result TTLs) or raise maxmemory"
        )
    if "WRONGTYPE" in text:
        return BrokerError(
            f"Redis refused a command: {exc}; a key under the prefix {settings.prefix!r} holds"
            " another type (another app writing there?): give taskforge its own TASKFORGE_PREFIX"
        )
    if "script" in text.lower():
        return BrokerError(f"a taskforge script failed inside Redis (Redis is reachable): {exc}")
    return BrokerError(f"Redis refused a command (Redis is reachable): {exc}")


__all__ = [
    "MARKER_TTL_MS",
    "Core",
    "Exec",
    "Invoke",
    "NodeOf",
    "OnPrimaries",
    "Pipe",
    "Plan",
    "Step",
    "one_connection",
    "wire",
    "wire_keys",
    "wrap_error",
]
