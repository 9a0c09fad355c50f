"""What a queue operation asks of Redis: the request kinds, and the scripts it may name.

An operation is a generator (:data:`Op`) that yields requests and receives their replies; it
never touches a client. The drivers (:mod:`taskforge.driver.sync_driver`,
:mod:`taskforge.driver.async_driver`) send the requests. Scripts are named, not inlined: the
layer that owns them hands the drivers a :class:`Scripts` of their sources.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
#: One argument of a command or script call.
Arg = str | int | float


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One Lua script invocation."""

    name: str
    keys: Sequence[str]
    args: Sequence[Arg]


@dataclass(frozen=True, slots=True)
class Command:
    """One plain Redis command."""

    args: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent together in one round trip (a non-transactional pipeline)."""

    commands: Sequence[Command]


@dataclass(frozen=True, slots=True)
class Replicated:
    """A script call, a write to ``marker``, then ``WAIT replicas timeout_ms``, on one connection.

    ``WAIT`` counts replicas that have this connection's last write; the marker write makes that
    the current end of the stream even when the script wrote nothing (a duplicate id, written
    earlier, maybe by another connection). The reply is the script's; the drivers raise
    :class:`~taskforge.errors.NotReplicatedError` when fewer than ``replicas`` replicas
    acknowledged in time.
    """

    call: ScriptCall
    marker: str
    replicas: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class WakeThenCall:
    """``BZPOPMIN wake_keys timeout``, then a script call, sent together on one connection.

    Redis runs the script the moment the blocking pop returns (woken or timed out), so an idle
    worker's fetch costs no round trip after the wake. The reply is the script's.
    Where a blocking command cannot share a pipeline (a cluster client, the embedded server)
    the drivers send the two one after the other.
    """

    wake_keys: Sequence[str]
    timeout_s: float
    call: ScriptCall


@dataclass(frozen=True, slots=True)
class EveryPrimary:
    """One command sent to every primary (a cluster's, or the one server); the reply is
    ``{node: reply}`` (the node is ``host:port`` on a cluster, ``""`` otherwise)."""

    command: Command


Request = ScriptCall | Command | Batch | Replicated | WakeThenCall | EveryPrimary
#: A queue operation: yields requests, receives their replies, returns its result.
Op = Generator[Request, Any, T]


class Scripts:
    """The Lua sources a driver may run, by name, with their SHA1 digests.

    ``hot`` names the scripts a producer calls once per job (enqueue): a plain single-server
    driver sends those on a connection it holds (:mod:`taskforge.driver.hot_lane`).
    """

    def __init__(self, sources: Mapping[str, str], *, hot: Iterable[str] = ()):
        self.sources = dict(sources)
        #: The same for ``memory://``: the embedded server reads no ``#!lua`` flags line.
        self.memory_sources = {name: _without_shebang(s) for name, s in self.sources.items()}
        self.hot = frozenset(hot)
        self._shas = {name: hashlib.sha1(s.encode()).hexdigest() for name, s in sources.items()}

    def sha(self, name: str) -> str:
        """The SHA1 ``EVALSHA`` names script ``name`` by."""
        return self._shas[name]

    def source(self, name: str, *, memory: bool) -> str:
        """Script ``name`` as the server in use can load it (``memory``: the embedded one)."""
        return self.memory_sources[name] if memory else self.sources[name]


def _without_shebang(source: str) -> str:
    # The embedded server (fakeredis) reads no script flags and cannot parse the line.
    return source.partition("\n")[2] if source.startswith("#!") else source


__all__ = [
    "Arg",
    "Batch",
    "Command",
    "EveryPrimary",
    "Op",
    "Replicated",
    "Request",
    "ScriptCall",
    "Scripts",
    "WakeThenCall",
]
