"""Health checks: the one report that ``taskforge health``, ``RedisClient.health_check()``,
``Admin.health()`` and the dashboard give: the integration guide's dict, plus queue depths, live
workers and warnings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio

from taskforge.driver.nodes import node_warnings, read_nodes
from taskforge.errors import BrokerError
from taskforge.job import PRIORITY_ORDER
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.inspection import InspectOps, QueueDepth

#: Every key of the report, present whatever the status (None when unknown; ``nodes`` is set
#: on a Redis Cluster only).
HEALTH_KEYS = (
    "status", "connected", "latency_ms", "version", "used_memory", "connected_clients",
    "uptime_seconds", "workers", "queues", "warnings", "error", "nodes",
)  # fmt: skip


#: The warning a command of its own (``taskforge health``) adds for a ``memory://`` URL: the
#: embedded server it would check lives in that process only.
MEMORY_HEALTH_WARNING = (
    "memory:// is a throwaway in-process server that lives as long as this command and holds"
    " nothing of any worker or producer: this checked no Redis. Pass --redis-url (or REDIS_URL)"
)


async def health_check(
    broker: AsyncBroker,
    *,
    queues: list[str] | None = None,
    depths: Sequence[QueueDepth] | None = None,
    separate_process: bool = False,
) -> dict[str, Any]:
    """The guide's dict (``status, connected, latency_ms, version, used_memory,
    connected_clients, uptime_seconds``) plus ``queues`` (depths), ``workers`` (how many are
    live), ``warnings``, ``error`` and, on a cluster, ``nodes``: always every key of
    :data:`HEALTH_KEYS`.

    ``status`` is ``healthy``, ``degraded`` (any warning: a Redis setting that can lose jobs,
    or ready jobs with no live worker) or ``unhealthy``. Never raises for an unreachable
    Redis: that is ``status: "unhealthy", connected: False`` with the reason in ``error``.
    ``depths`` the caller already read are reported instead of reading them again.
    ``separate_process``: the caller is a process of its own that shares no ``memory://``
    server with any worker (the CLI), so a reachable ``memory://`` one is reported
    ``degraded`` with :data:`MEMORY_HEALTH_WARNING` first.
    """
    report = await _report(broker, queues, depths)
    defaults: dict[str, Any] = {"queues": {}, "warnings": []}
    report = {key: report.get(key, defaults.get(key)) for key in HEALTH_KEYS}
    if separate_process and broker.settings.is_memory and report["connected"]:
        report["status"] = "degraded" if report["status"] == "healthy" else report["status"]
        report["warnings"].insert(0, MEMORY_HEALTH_WARNING)
    return report


async def health_check_once(
    broker: AsyncBroker, *, queues: list[str] | None = None, separate_process: bool = False
) -> dict[str, Any]:
    """:func:`health_check` on a broker made for it, closed afterwards (a blocking caller's
    ``anyio.run`` owns no other use of it)."""
    try:
        return await health_check(broker, queues=queues, separate_process=separate_process)
    finally:
        with anyio.CancelScope(shield=True):
            await broker.aclose()


async def _report(
    broker: AsyncBroker, queues: list[str] | None, known: Sequence[QueueDepth] | None
) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        if broker.settings.is_memory:  # the embedded server has no INFO: answer for it
            await broker.run(broker.ops.known_queues())
            infos = {"": {"redis_version": "7.2 (embedded memory://)", "connected_clients": 1}}
            saves: dict[str, str | None] = {}
        else:
            infos, saves = await read_nodes(broker)
        latency_ms = (time.perf_counter() - started) * 1000
        inspect = InspectOps(broker.ops)
        if known is None:
            names = queues if queues is not None else await broker.run(broker.ops.known_queues())
            known = await broker.run(inspect.depths(names))
        depths = {
            d.queue: {**d.ready, "scheduled": d.scheduled, "inflight": d.inflight, "dead": d.dead}
            for d in known
        }
        live = [w for w in await broker.run(inspect.workers()) if not w.lost]
    except BrokerError as exc:
        return {"status": "unhealthy", "connected": False, "error": str(exc)}
    warnings = node_warnings(infos, saves) + _backlog_warnings(depths, len(live))
    report: dict[str, Any] = {
        "status": "degraded" if warnings else "healthy",
        "connected": True,
        "latency_ms": round(latency_ms, 2),
        **_summary(list(infos.values())),
        "workers": len(live),
        "queues": depths,
        "warnings": warnings,
    }
    if len(infos) > 1:  # a cluster: each primary's own figures too
        report["nodes"] = {node: _summary([info]) for node, info in infos.items()}
    return report


def _backlog_warnings(depths: dict[str, dict[str, int]], live_workers: int) -> list[str]:
    ready = sum(d.get(p.value, 0) for d in depths.values() for p in PRIORITY_ORDER)
    if ready and not live_workers:
        return [f"{ready} job(s) ready but no live worker: start one with `taskforge worker`"]
    return []


def _summary(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """The guide's fields over one server, or over a cluster's primaries (the oldest version,
    the total memory and clients, the shortest uptime)."""
    if len(infos) == 1:
        (info,) = infos
        return {
            "version": info.get("redis_version"),
            "used_memory": info.get("used_memory_human"),
            "connected_clients": info.get("connected_clients"),
            "uptime_seconds": info.get("uptime_in_seconds"),
        }
    versions = [str(i.get("redis_version", "0")) for i in infos]
    return {
        "version": min(versions, key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit())),
        "used_memory": f"{sum(int(i.get('used_memory', 0)) for i in infos) / 2**20:.2f}M",
        "connected_clients": sum(int(i.get("connected_clients", 0)) for i in infos),
        "uptime_seconds": min(int(i.get("uptime_in_seconds", 0)) for i in infos),
    }


__all__ = ["HEALTH_KEYS", "MEMORY_HEALTH_WARNING", "health_check", "health_check_once"]
