"""The queue protocol's Lua scripts: their names, their sources (each with the prelude helpers it
uses), and the :class:`~taskforge.driver.requests.Scripts` the drivers run them from.

The scripts live in ``taskforge/protocol/lua/``; each documents its ``KEYS`` and ``ARGV`` in its
header.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from taskforge.driver.requests import Scripts

SCRIPT_NAMES = (
    "enqueue", "fetch", "finish", "retry", "requeue", "extend", "watch", "cancel", "revive",
    "cron_tick", "limit_rate", "limit_acquire", "limit_extend", "progress",
    "wf_create", "wf_advance", "wf_cancel", "wf_outbox",
    # The admin API's (taskforge.protocol.inspection, taskforge.deadletters).
    "purge_queue", "purge_drain", "purge_dead", "stats_series", "queue_summary",
    "upgrade_record",
)  # fmt: skip


def _load_sources() -> dict[str, str]:
    folder = resources.files("taskforge.protocol") / "lua"
    prelude = (folder / "_prelude.lua").read_text()
    return {
        name: _with_prelude(prelude, (folder / f"{name}.lua").read_text()) for name in SCRIPT_NAMES
    }


#: A top-level definition in the prelude: ``local function name(`` or ``local NAME =``.
_DEFINITION = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)\b")


@functools.cache  # one prelude, parsed once for all the scripts
def _helpers(prelude: str) -> list[tuple[str, str]]:
    """The prelude as ``(name, text)`` chunks in their order: each top-level ``local`` with the
    comment lines above it, up to the next one (text before the first belongs to none)."""
    chunks: list[tuple[str, str]] = []
    pending: list[str] = []  # comment and blank lines, for the definition that follows them
    for line in prelude.splitlines(keepends=True):
        found = _DEFINITION.match(line)
        if found:
            chunks.append((found.group(1), "".join(pending) + line))
            pending = []
        elif not chunks and not line.strip():
            pending = []  # the file's own header ends at its first blank line
        elif line.startswith("--") or not line.strip():
            pending.append(line)
        elif chunks:  # the rest of the definition above (a body, its closing 'end')
            name, text = chunks[-1]
            chunks[-1] = (name, text + "".join(pending) + line)
            pending = []
    return chunks


def _words(text: str) -> set[str]:
    # One pass per text: a search per helper name took ~17 ms of every worker's start.
    return set(re.findall(r"\w+", text))


def _with_prelude(prelude: str, body: str) -> str:
    """``body`` with the prelude's helpers it uses, directly or through another helper, in the
    prelude's order. Redis builds every ``local function`` of a script on each call (globals are
    read-only, nothing is kept between calls): a helper a script never calls costs ~1,000
    instructions per call, and the whole prelude was 13,200 on every script call."""
    chunks = _helpers(prelude)
    names = {name for name, _ in chunks}
    wanted = names & _words(body)
    for name, text in reversed(chunks):  # a helper uses only helpers defined above it
        if name in wanted:
            wanted |= (names & _words(text)) - {name}
    helpers = "".join(text for name, text in chunks if name in wanted)
    # A script's '#!lua flags=...' line (Redis 7 script flags) must stay the first line.
    if body.startswith("#!"):
        shebang, _, rest = body.partition("\n")
        return f"{shebang}\n{helpers}{rest}"
    return helpers + body


SOURCES = _load_sources()
#: The scripts the drivers run; a producer's enqueue (``.delay()``) takes the hot lane.
SCRIPTS = Scripts(SOURCES, hot=("enqueue",))
#: The scripts for ``memory://``: the same, without the flags line (it has no maxmemory).
MEMORY_SOURCES = SCRIPTS.memory_sources

__all__ = ["MEMORY_SOURCES", "SCRIPTS", "SCRIPT_NAMES", "SOURCES"]
