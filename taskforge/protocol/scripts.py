"""The queue protocol's Lua scripts: their names, their sources (each with the shared prelude),
and the :class:`~taskforge.driver.requests.Scripts` the drivers run them from.

The scripts live in ``taskforge/protocol/lua/``; each documents its ``KEYS`` and ``ARGV`` in its
header.
"""

from __future__ import annotations

from importlib import resources

from taskforge.driver.requests import Scripts

SCRIPT_NAMES = (
    "enqueue", "fetch", "finish", "retry", "requeue", "extend", "watch", "cancel", "revive",
    "cron_tick", "limit_rate", "limit_acquire", "limit_extend", "progress",
    "wf_create", "wf_advance", "wf_cancel", "wf_outbox",
    # The admin API's (taskforge.protocol.inspection, taskforge.deadletters).
    "purge_queue", "purge_drain", "purge_dead", "stats_series", "queue_summary",
)  # fmt: skip


def _load_sources() -> dict[str, str]:
    folder = resources.files("taskforge.protocol") / "lua"
    prelude = (folder / "_prelude.lua").read_text()
    return {
        name: _with_prelude(prelude, (folder / f"{name}.lua").read_text()) for name in SCRIPT_NAMES
    }


def _with_prelude(prelude: str, body: str) -> str:
    # A script's '#!lua flags=...' line (Redis 7 script flags) must stay the first line.
    if body.startswith("#!"):
        shebang, _, rest = body.partition("\n")
        return f"{shebang}\n{prelude}{rest}"
    return prelude + body


SOURCES = _load_sources()
#: The scripts the drivers run; a producer's enqueue (``.delay()``) takes the hot lane.
SCRIPTS = Scripts(SOURCES, hot=("enqueue",))
#: The scripts for ``memory://``: the same, without the flags line (it has no maxmemory).
MEMORY_SOURCES = SCRIPTS.memory_sources

__all__ = ["MEMORY_SOURCES", "SCRIPTS", "SCRIPT_NAMES", "SOURCES"]
