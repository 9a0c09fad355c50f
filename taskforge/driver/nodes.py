"""Server and node reads: each primary's ``INFO`` and ``save`` setting, and what they warn about.

The worker checks them at start (``Worker.check_server``) and ``taskforge health`` reports them;
neither needs the other, so they live here, beside the connection they read through.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from taskforge.driver.requests import Command, EveryPrimary, Op
from taskforge.errors import BrokerError

T = TypeVar("T")


class Runner(Protocol):
    """Anything that drives an operation to its result (the async driver, a broker)."""

    async def run(self, op: Op[T]) -> T:
        """Drive ``op``."""
        ...


def node_infos() -> Op[dict[str, dict[str, Any]]]:
    """``INFO`` of every primary: ``{node: info}`` (one entry, ``""``, off a cluster)."""
    raw = yield EveryPrimary(Command(("INFO",)))
    return {node: dict(info) for node, info in raw.items()}


def node_configs(name: str) -> Op[dict[str, str | None]]:
    """One ``CONFIG GET`` value of every primary (None where unknown)."""
    raw = yield EveryPrimary(Command(("CONFIG", "GET", name)))
    return {node: config_value(reply, name) for node, reply in raw.items()}


def config_value(reply: Any, name: str) -> str | None:
    """One value of a ``CONFIG GET`` reply (None where unknown)."""
    return reply.get(name) if isinstance(reply, dict) else None


def server_warnings(info: dict[str, Any], save_config: str | None = None) -> list[str]:
    """Warnings about a Redis whose settings can lose jobs (eviction, no persistence, < 7).

    ``save_config`` is ``CONFIG GET save`` (None when unknown: no persistence warning then).
    """
    warnings = []
    version = str(info.get("redis_version", "0"))
    if int(version.split(".")[0]) < 7:
        warnings.append(f"Redis {version} is older than 7; taskforge needs Redis >= 7")
    policy = info.get("maxmemory_policy", "noeviction")
    if policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy!r}: Redis may evict job records (lost jobs); "
            "set maxmemory-policy noeviction"
        )
    # RDB is off when ``save`` is empty; unknown (CONFIG refused) means no warning.
    if not int(info.get("aof_enabled", 0)) and save_config is not None and not save_config.strip():
        warnings.append("persistence is off: a Redis restart loses every queued job")
    return warnings


async def read_nodes(
    broker: Runner,
) -> tuple[dict[str, dict[str, Any]], dict[str, str | None]]:
    """``INFO`` and ``CONFIG GET save`` of every primary (a cluster's, or the one server)."""
    infos = await broker.run(node_infos())
    try:
        saves = await broker.run(node_configs("save"))
    except BrokerError:  # CONFIG may be renamed away, as the seed's checklist advises
        saves = {}
    return infos, saves


def node_warnings(infos: dict[str, dict[str, Any]], saves: dict[str, str | None]) -> list[str]:
    """:func:`server_warnings` of every primary, each led by its node's address on a cluster."""
    return [
        f"{node}: {warning}" if node else warning
        for node, info in infos.items()
        for warning in server_warnings(info, saves.get(node))
    ]


__all__ = [
    "Runner",
    "config_value",
    "node_configs",
    "node_infos",
    "node_warnings",
    "read_nodes",
    "server_warnings",
]
