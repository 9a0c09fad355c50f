"""Each Lua script's KEYS/ARGV header agrees with the Python operation that calls it.

A script documents its contract in its leading comment (``-- KEYS[4]  scheduled zset``,
``-- ARGV[4..]  per job, 9 values: ...``). The operations are request generators, so each is
run here with sample inputs, without Redis, and the script calls it yields are checked against
the header: how many keys and arguments, and, by what each header line says, which key sits at
which position (and where recognisable arguments such as the queue name or a job id sit).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pytest

from taskforge.deadletters import DeadOps, DeadSelection
from taskforge.driver.requests import (
    Batch,
    Command,
    Op,
    Replicated,
    Request,
    ScriptCall,
    WakeThenCall,
)
from taskforge.job import JobPriority, JobStatus
from taskforge.protocol.inspection import InspectOps
from taskforge.protocol.keys import GlobalKeys, QueueKeys
from taskforge.protocol.ops import Ops
from taskforge.protocol.records import NewJob, Outcome
from taskforge.protocol.scripts import SCRIPT_NAMES, SCRIPTS
from taskforge.settings import Settings
from taskforge.upgrade import upgrade_queue
from taskforge.workflow.ops import WORKFLOW_EVENTS, MemberOutcome, WorkflowKeys, WorkflowOps

PREFIX, QUEUE, JOB, TOKEN, TASK, WORKFLOW, CRON = (
    "tf",
    "q1",
    "J1",
    "T1",
    "tasks.add",
    "W1",
    "nightly",
)
EVENTS = "EVENTS"

# ----------------------------------------------------------------------------- the header


class HeaderError(AssertionError):
    """A header is malformed, or a call disagrees with it."""


@dataclass(frozen=True)
class Entry:
    """One ``KEYS[first..last]`` / ``ARGV[first..last]`` line; ``last`` None: open tail."""

    first: int
    last: int | None
    group: int  # values per item of an open tail
    text: str


_ENTRY = re.compile(r"^--\s+(KEYS|ARGV)\[(\d+)(\.\.(\d*))?\]\s+(.*)$")
_GROUP = re.compile(r"per \w+, (\d+) values")


def parse_header(source: str) -> dict[str, list[Entry]]:
    """The KEYS and ARGV entries of a script's leading comment, checked to be contiguous."""
    found: dict[str, list[Entry]] = {"KEYS": [], "ARGV": []}
    for line in source.splitlines():
        if line.startswith("#!"):
            continue
        if not line.startswith("--"):
            break
        m = _ENTRY.match(line)
        if m is not None:
            found[m.group(1)].append(_entry(m))
    for kind, entries in found.items():
        entries.sort(key=lambda e: e.first)
        _check_contiguous(kind, entries)
    return found


def _entry(m: re.Match[str]) -> Entry:
    first, text = int(m.group(2)), m.group(5)
    last: int | None = first
    if m.group(3) is not None:
        last = int(m.group(4)) if m.group(4) else None
    g = _GROUP.search(text)
    return Entry(first, last, int(g.group(1)) if g else 1, text)


def _check_contiguous(kind: str, entries: list[Entry]) -> None:
    expected = 1
    for i, e in enumerate(entries):
        if e.first != expected:
            raise HeaderError(f"{kind}[{expected}] is missing or doubled (next: {e.text!r})")
        if e.last is None:
            if i != len(entries) - 1:
                raise HeaderError(f"{kind}[{e.first}..] is open but not last")
            return
        if e.last < e.first:
            raise HeaderError(f"{kind}[{e.first}..{e.last}] is empty")
        expected = e.last + 1


# ----------------------------------------------------------------------------- what each line means

_q, _g, _w = QueueKeys(PREFIX, QUEUE), GlobalKeys(PREFIX), WorkflowKeys(PREFIX, WORKFLOW)
_wf = dict(zip(("meta", "links", "calls", "state", "wait", "results", "done"), _w.all, strict=True))
#: Header phrase -> the keys it may name (each a list: a range names several).
KEY_ROLES: dict[str, list[list[str]]] = {
    "ready lists high, normal, low": [_q.ready_lists],
    "scheduled zset": [[_q.scheduled]],
    "inflight zset": [[_q.inflight]],
    "wake marker zset": [[_q.wake]],
    "dead zset": [[_q.dead]],
    "job key prefix": [[_q.job_prefix]],
    "job record": [[_q.job(JOB)]],
    "the old record": [[f"{_q.base}:job:{JOB}"]],
    "the new record": [[_q.job(JOB)]],
    "workflow outbox zset": [[_q.base + ":wf_outbox"]],
    "outbox zset of the queue": [[_q.base + ":wf_outbox"]],
    "request record prefix": [[_q.fetched]],
    "unique lock prefix": [[_q.base + ":unique:"]],
    "last-tick marker": [[_q.cron(CRON)]],
    "running zset of the task": [[_g.concurrency(TASK)]],
    "counter key prefix of the task": [[_g.rate_prefix(TASK)]],
    "stats key prefix": [[_q.stats], [_g.stats]],
    "set of purge tokens": [[_q.base + ":purges"]],
    "graveyard key prefix": [[_q.base + ":purged:"]],
    "meta hash": [[_wf["meta"]]],
    "links hash": [[_wf["links"]]],
    "calls hash": [[_wf["calls"]]],
    "state hash": [[_wf["state"]]],
    "wait hash": [[_wf["wait"]]],
    "results hash": [[_wf["results"]]],
    "done list": [[_wf["done"]]],
}
#: Header phrase -> the sample value that argument must carry (others are counted only).
ARG_ROLES: dict[str, Any] = {
    "events channel": EVENTS,
    "workflow events channel": WORKFLOW_EVENTS,
    "queue name": QUEUE,
    "job id": JOB,
    "lease token": TOKEN,
    "workflow id": WORKFLOW,
}


def _role(text: str, roles: Iterable[str]) -> str | None:
    hits = [r for r in roles if text.startswith(r) or text.startswith("the " + r)]
    return max(hits, key=len) if hits else None


def check_call(entries: dict[str, list[Entry]], call: ScriptCall, items: int | None) -> None:
    """Raise :class:`HeaderError` where ``call`` disagrees with the header ``entries``.

    ``items``: how many items the caller was given for an open ARGV tail (None: unchecked).
    """
    _check_count(call.name, "KEYS", entries["KEYS"], call.keys, None)
    _check_count(call.name, "ARGV", entries["ARGV"], call.args, items)
    _check_roles(call.name, "KEYS", entries["KEYS"], call.keys)
    _check_roles(call.name, "ARGV", entries["ARGV"], call.args)


def _check_count(
    name: str, kind: str, spec: list[Entry], values: Sequence[Any], items: int | None
) -> None:
    tail = spec[-1] if spec and spec[-1].last is None else None
    if tail is None:
        fixed = spec[-1].last or 0 if spec else 0
        if len(values) != fixed:
            raise HeaderError(f"{name}: header has {fixed} {kind}, the caller passes {len(values)}")
        return
    fixed, extra = tail.first - 1, len(values) - tail.first + 1
    if extra < 0 or extra % tail.group:
        raise HeaderError(
            f"{name}: header has {fixed} {kind} then groups of {tail.group}; the caller passes"
            f" {len(values)}"
        )
    if items is not None and extra != items * tail.group:
        raise HeaderError(
            f"{name}: {items} items of {tail.group} {kind} expected after {fixed}; the caller"
            f" passes {len(values)}"
        )


def _check_roles(name: str, kind: str, spec: list[Entry], values: Sequence[Any]) -> None:
    for e in spec:
        if e.last is None:
            continue  # an open tail: counted above
        got = list(values[e.first - 1 : e.last])
        if kind == "KEYS":
            role = _role(e.text, KEY_ROLES)
            if role is None:
                raise HeaderError(f"{name}: KEYS[{e.first}] {e.text!r}: add it to KEY_ROLES")
            if got not in KEY_ROLES[role]:
                raise HeaderError(f"{name}: KEYS[{e.first}] should be the {role}, got {got}")
        else:
            arg = _role(e.text, ARG_ROLES)
            if arg is not None and got != [ARG_ROLES[arg]]:
                raise HeaderError(f"{name}: ARGV[{e.first}] should be the {arg}, got {got}")


# ----------------------------------------------------------------------------- the callers


def _name_of_sha(sha: Any) -> str:
    return next(n for n in SCRIPT_NAMES if SCRIPTS.sha(n) == sha)


def _calls_in(request: Request) -> list[ScriptCall]:
    if isinstance(request, ScriptCall):
        return [request]
    if isinstance(request, Replicated | WakeThenCall):
        return [request.call]
    commands = request.commands if isinstance(request, Batch) else [request]
    out = []
    for c in commands:
        if isinstance(c, Command) and c.args[0] == "EVALSHA":
            n = int(c.args[2])
            out.append(ScriptCall(_name_of_sha(c.args[1]), c.args[3 : 3 + n], c.args[3 + n :]))  # type: ignore[arg-type]
    return out


def script_calls(op: Op[Any], *, want: int = 1, replies: Sequence[Any] = ()) -> list[ScriptCall]:
    """The first ``want`` script calls ``op`` yields, answering its requests with ``replies``."""
    found: list[ScriptCall] = []
    answers = iter(replies)
    try:
        request = next(op)
        while True:
            found += _calls_in(request)
            if len(found) >= want:
                break
            request = op.send(next(answers))
    except StopIteration:
        pass
    finally:
        op.close()
    return found


def _job(i: int) -> NewJob:
    return NewJob(f"J{i}", TASK, JobPriority.NORMAL, unique_key="u")


def _outcome(i: int) -> Outcome:
    return Outcome(f"J{i}", TOKEN, JobStatus.SUCCEEDED, result_json="1")


def _ops(**settings: Any) -> Ops:
    return Ops(Settings(prefix=PREFIX, events_channel=EVENTS, **settings))


_o = _ops()
_leases = [(JOB, TOKEN), ("J2", "T2")]
#: Script -> [(case, its calls, items given for the open ARGV tail)].
Case = tuple[str, Callable[[], list[ScriptCall]], int | None]
CALLERS: dict[str, list[Case]] = {
    "enqueue": [
        ("enqueue", lambda: script_calls(_o.enqueue(QUEUE, [_job(1), _job(2)])), 2),
        ("durable", lambda: script_calls(_ops(durable_enqueue=True).enqueue(QUEUE, [_job(1)])), 1),
    ],
    "fetch": [
        ("fetch", lambda: script_calls(_o.fetch(QUEUE, 5, "w1", request_id="r")), None),
        ("wait_then_fetch", lambda: script_calls(_o.wait_then_fetch(QUEUE, 5, "w1", 1.0)), None),
    ],
    "finish": [("finish", lambda: script_calls(_o.finish(QUEUE, [_outcome(1), _outcome(2)])), 2)],
    "retry": [
        ("retry", lambda: script_calls(_o.retry(QUEUE, JOB, TOKEN, 10, ("E", "m", "tb"))), None)
    ],
    "requeue": [("requeue", lambda: script_calls(_o.requeue(QUEUE, _leases, 5)), 2)],
    "extend": [("extend", lambda: script_calls(_o.extend(QUEUE, _leases)), 2)],
    "watch": [("watch", lambda: script_calls(_o.watch(QUEUE, JOB)), None)],
    "cancel": [("cancel", lambda: script_calls(_o.cancel(QUEUE, JOB, "control")), None)],
    "revive": [("revive", lambda: script_calls(_o.revive(QUEUE, [JOB, "J2", "J3"])), 3)],
    "cron_tick": [
        (
            "cron_claim",
            lambda: script_calls(_o.cron_claim(QUEUE, CRON, 1, 2, [(1, _job(1)), (2, _job(2))])),
            2,
        )
    ],
    "limit_rate": [("rate_acquire", lambda: script_calls(_o.rate_acquire(TASK, 3, 1000)), None)],
    "limit_acquire": [("slot_acquire", lambda: script_calls(_o.slot_acquire(TASK, JOB, 3)), None)],
    "limit_extend": [("slot_extend", lambda: script_calls(_o.slot_extend(TASK, [JOB, "J2"])), 2)],
    "progress": [
        ("progress", lambda: script_calls(_o.progress(QUEUE, [(JOB, TOKEN, 0.5, "m")] * 2)), 2)
    ],
    "purge_queue": [("purge", lambda: script_calls(InspectOps(_o).purge(QUEUE)), None)],
    "purge_drain": [
        ("drain_purged", lambda: script_calls(InspectOps(_o).drain_purged(QUEUE)), None)
    ],
    "stats_series": [
        ("series", lambda: script_calls(InspectOps(_o).series([QUEUE]), replies=[[1, 0]]), 4)
    ],
    "queue_summary": [
        (
            "series",
            # TIME, stats_series, the first queue's call, then the rest pipelined as EVALSHA.
            lambda: script_calls(
                InspectOps(_o).series([QUEUE, QUEUE]), want=3, replies=[[1, 0], [], []]
            )[1:],
            4,
        )
    ],
    "purge_dead": [
        (
            "DeadOps.apply purge",
            lambda: script_calls(
                DeadOps(_o).apply("purge", DeadSelection({QUEUE: [JOB, "J2"]}, []))
            ),
            2,
        )
    ],
    "wf_create": [
        (
            "create",
            lambda: script_calls(
                WorkflowOps(_o.settings).create(
                    WORKFLOW, {}, "@0@", 1, [("l", "c", "ready", 0)] * 2
                )
            ),
            2,
        )
    ],
    "wf_advance": [
        (
            "advance",
            lambda: script_calls(
                WorkflowOps(_o.settings).advance(WORKFLOW, [MemberOutcome(JOB, 0, "succeeded")])
            ),
            1,
        )
    ],
    "wf_cancel": [
        ("cancel", lambda: script_calls(WorkflowOps(_o.settings).cancel(WORKFLOW)), None)
    ],
    "upgrade_record": [
        (
            "upgrade_queue",
            lambda: script_calls(
                upgrade_queue(_o, QUEUE, None),
                replies=[["0", [f"{_q.base}:job:{JOB}"]], [{"status": "queued", "task": TASK}]],
            ),
            None,
        )
    ],
    "wf_outbox": [
        (
            "due_outbox",
            lambda: script_calls(WorkflowOps(_o.settings).due_outbox(QUEUE, 10, 5)),
            None,
        )
    ],
}


def _source(name: str) -> str:
    return (resources.files("taskforge.protocol") / "lua" / f"{name}.lua").read_text()


def test_every_script_has_a_caller_case() -> None:
    assert set(CALLERS) == set(SCRIPT_NAMES)


@pytest.mark.parametrize(
    ("script", "case", "calls", "items"),
    [(s, c, f, n) for s, cases in CALLERS.items() for c, f, n in cases],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_header_matches_the_caller(
    script: str, case: str, calls: Callable[[], list[ScriptCall]], items: int | None
) -> None:
    entries = parse_header(_source(script))
    assert entries["KEYS"], f"{script}.lua documents no KEYS"
    made = calls()
    assert made, f"{case} yielded no script call"
    for call in made:
        assert call.name == script
        check_call(entries, call, items)


# ----------------------------------------------------------------------------- the check can fail


def test_a_swapped_or_missing_header_line_fails_the_check() -> None:
    source = _source("retry")
    call = script_calls(_o.retry(QUEUE, JOB, TOKEN, 10, ("E", "m", "tb")))[0]
    check_call(parse_header(source), call, None)
    swapped = (
        source.replace("-- KEYS[1]     inflight", "-- KEYS[9]     inflight")
        .replace("-- KEYS[2]     scheduled", "-- KEYS[1]     scheduled")
        .replace("-- KEYS[9]     inflight", "-- KEYS[2]     inflight")
    )
    with pytest.raises(HeaderError, match="KEYS\\[1\\] should be the scheduled zset"):
        check_call(parse_header(swapped), call, None)
    missing = source.replace("-- ARGV[9]", "-- (gone)")
    with pytest.raises(HeaderError, match="header has 8 ARGV, the caller passes 9"):
        check_call(parse_header(missing), call, None)
    gap = source.replace("-- ARGV[5]", "-- ARGV[6]")
    with pytest.raises(HeaderError, match="missing or doubled"):
        parse_header(gap)


def test_a_caller_passing_a_wrong_tail_fails_the_check() -> None:
    entries = parse_header(_source("finish"))
    call = script_calls(_o.finish(QUEUE, [_outcome(1)]))[0]
    check_call(entries, call, 1)
    short = ScriptCall(call.name, call.keys, call.args[:-1])
    with pytest.raises(HeaderError, match="groups of 8"):
        check_call(entries, short, None)
    with pytest.raises(HeaderError, match="2 items of 8 ARGV expected"):
        check_call(entries, call, 2)
