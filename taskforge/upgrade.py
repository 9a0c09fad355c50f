"""Moving job records of the previous layout to the compact one (``taskforge upgrade-records``).

The previous layout kept each job at ``<prefix>:{<queue>}:job:<id>``: a hash with the whole call
as one JSON ``envelope`` field, status words and every counter and time written out. The compact
layout (README, "Redis data model") keeps it at ``<prefix>:{<queue>}:j:<id>`` with one-letter
fields, a status letter and only what differs from its defaults. Workers of this version read
only the compact layout, so: stop the old workers, run the upgrade, start the new ones.

Each record moves in one script (``upgrade_record.lua``), so a record is always whole in one
layout or the other; running the upgrade again moves what is left and changes nothing else.
With a signing key set, a signed job whose old signature verifies is signed again in the new
form. :func:`unsigned_moves` finds, before anything moves, the signed records that would lose
their signature (no key, or one their signature was not made with): the upgrade refuses then.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from taskforge.driver.requests import Batch, Command, Op, ScriptCall
from taskforge.job import JobPriority
from taskforge.protocol.lifecycle import OpsBase
from taskforge.protocol.records import OPTION_DEFAULTS, OPTION_FIELDS, STATUS_LETTER
from taskforge.signing import sign_fields

#: Fields of the previous layout that the compact one stores under other names or leaves out.
_RENAMED = {"attempts": "n", "deliveries": "v", "created_ms": "c"}
_CONSUMED = {"envelope", "task", "status", "priority", "enqueued_ms", "run_at_ms", *_RENAMED}
_OLD_SIG_SUFFIX = len(',"sig":"') + 64 + len('"}')
_LETTER_OF_WORD = {s.value: letter for s, letter in STATUS_LETTER.items()}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Upgraded:
    """What one queue's upgrade did: records moved, already moved (or gone), left behind
    because they changed while it ran (run it again once the old workers are stopped), and
    recovered: jobs a new worker, started too early, had dead-lettered for want of a record
    in its layout; their calls are back in their dead records (``taskforge dead requeue``)."""

    queue: str
    moved: int = 0
    skipped: int = 0
    changed: int = 0
    recovered: int = 0


def compact_fields(job_id: str, queue: str, raw: dict[str, str], key: bytes | None) -> list[str]:
    """The compact record's fields (flat name, value pairs) for a record of the previous layout."""
    out: dict[str, str] = {k: v for k, v in raw.items() if k not in _CONSUMED}
    env = raw.get("envelope", "")
    try:
        data: Any = json.loads(env) if env else {}
    except ValueError:
        data = None
    out["t"] = raw.get("task") or (data.get("task", "") if isinstance(data, dict) else "")
    status = raw.get("status", "")
    out["s"] = _LETTER_OF_WORD.get(status, status)
    created = raw.get("created_ms", "")
    for old, new in _RENAMED.items():
        if raw.get(old, "0") != "0" or (old == "created_ms" and created):
            out[new] = raw[old]
    for old, new in (("enqueued_ms", "e"), ("run_at_ms", "r")):
        if old in raw and raw[old] != created:
            out[new] = raw[old]
    if raw.get("priority", JobPriority.NORMAL.value) != JobPriority.NORMAL.value:
        out["p"] = raw["priority"]
    if not isinstance(data, dict):  # a damaged envelope: the worker dead-letters it, as before
        out["a"] = "undecodable envelope: " + env
        return [x for pair in out.items() for x in pair]
    texts = _call_fields(data, out)
    if key is not None and _old_signature_holds(env, key):
        out["g"] = sign_fields(key, (job_id, out["t"], queue, *texts))
    return [x for pair in out.items() for x in pair]


def _call_fields(data: dict[str, Any], out: dict[str, str]) -> tuple[str, str, str]:
    """Set ``a``, ``k``, ``o`` from an old envelope (each only when not empty); return their
    texts ('' where absent), the order the signature covers them."""
    if data.get("args"):
        out["a"] = _dumps(data["args"])
    if data.get("kwargs"):
        out["k"] = _dumps(data["kwargs"])
    opts = {n: data[n] for n in OPTION_FIELDS if n in data and data[n] != OPTION_DEFAULTS[n]}
    if opts:
        out["o"] = _dumps(opts)
    return out.get("a", ""), out.get("k", ""), out.get("o", "")


def unsigned_moves(ops: OpsBase, queue: str, key: bytes | None, batch: int = 500) -> Op[list[str]]:
    """Ids of ``queue``'s old records that are signed but whose signature ``key`` cannot carry
    over (no key, or a signature it did not make): moved, they would lose it and be refused."""
    k = ops.keys(queue)
    old_prefix, pattern = _old_keys(k.base)
    lost: list[str] = []
    cursor = "0"
    while True:
        cursor, found = yield Command(
            ("SCAN", cursor, "MATCH", pattern, "COUNT", batch, "TYPE", "hash")
        )
        names = [str(n) for n in found]
        envelopes = yield Batch([Command(("HGET", n, "envelope")) for n in names])
        for name, env in zip(names, envelopes, strict=True):
            if (
                env
                and _old_signed(str(env))
                and (key is None or not _old_signature_holds(str(env), key))
            ):
                lost.append(name[len(old_prefix) :])
        if str(cursor) == "0":
            return lost


def _old_keys(base: str) -> tuple[str, str]:
    """The previous layout's record prefix under ``base``, and a SCAN pattern matching it only."""
    old_prefix = f"{base}:job:"
    return old_prefix, "".join("\\" + c if c in "*?[]\\" else c for c in old_prefix) + "*"


def _old_signed(env: str) -> bool:
    at = len(env) - _OLD_SIG_SUFFIX
    return at >= 1 and env.endswith('"}') and env[at:].startswith(',"sig":"')


def _old_signature_holds(env: str, key: bytes) -> bool:
    """Whether an envelope carries the previous layout's signature (a last ``"sig"`` member,
    an HMAC of the text without it) made with ``key``."""
    at = len(env) - _OLD_SIG_SUFFIX
    if at < 1 or not env.endswith('"}') or not env[at:].startswith(',"sig":"'):
        return False
    signed = (env[:at] + "}").encode("utf-8", "surrogateescape")
    expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(env[at + 8 : -2], expected)


def upgrade_queue(ops: OpsBase, queue: str, key: bytes | None, batch: int = 500) -> Op[Upgraded]:
    """Move every record of ``queue`` still in the previous layout (SCAN over its old keys)."""
    k = ops.keys(queue)
    old_prefix, pattern = _old_keys(k.base)
    moved = skipped = changed = recovered = 0
    cursor = "0"
    while True:
        cursor, found = yield Command(
            ("SCAN", cursor, "MATCH", pattern, "COUNT", batch, "TYPE", "hash")
        )  # a stray key of another type under the prefix is not a record: not read
        names = [str(n) for n in found]
        records = yield Batch([Command(("HGETALL", n)) for n in names])
        for name, raw in zip(names, records, strict=True):
            job_id = name[len(old_prefix) :]
            if not raw:
                skipped += 1
                continue
            fields = compact_fields(job_id, queue, raw, key)
            args = [raw.get("status", ""), *fields]
            done = yield ScriptCall("upgrade_record", [name, k.job(job_id)], args)
            moved += done == 1
            skipped += done in (2, -1)
            changed += done == 0
            recovered += done == 3
        if str(cursor) == "0":
            return Upgraded(queue, moved, skipped, changed, recovered)


__all__ = ["Upgraded", "compact_fields", "unsigned_moves", "upgrade_queue"]
