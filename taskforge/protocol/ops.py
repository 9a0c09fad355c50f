"""The queue protocol: every operation as a generator of requests.

Each queue operation is written once, as a generator that yields what to send (a Lua script
call, a command, or a pipeline of commands) and returns the parsed answer.
:class:`~taskforge.protocol.brokers.SyncBroker` and
:class:`~taskforge.protocol.brokers.AsyncBroker` drive the same operations over redis-py's
blocking and asyncio clients, so the producer API can be synchronous without a second copy of
the protocol. :class:`Ops` gathers the groups: a job's lifecycle
(:mod:`~taskforge.protocol.lifecycle`), the features around it
(:mod:`~taskforge.protocol.feature_ops`) and the state around the queues
(:mod:`~taskforge.protocol.state_ops`).
"""

from __future__ import annotations

from taskforge.protocol.feature_ops import FeatureOps
from taskforge.protocol.lifecycle import LifecycleOps
from taskforge.protocol.state_ops import StateOps


class Ops(LifecycleOps, FeatureOps, StateOps):
    """The queue protocol: every operation as a generator of requests (see module docstring)."""


__all__ = ["Ops"]
