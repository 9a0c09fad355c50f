"""Where the server's time of a one-job enqueue goes: Redis-side µs per script call.

    python benchmarks/script_cost.py                      # private redis-server, N = 5,000
    python benchmarks/script_cost.py --variant old=/tmp/enqueue_old.lua --n 20000 --rounds 5

For each variant of the enqueue script (``current`` = the package's ``enqueue.lua`` with the
prelude, as the broker loads it; ``--variant name=path`` adds a body from a file, the prelude
prepended the same way) it sends N one-job ``EVALSHA`` calls with the arguments a ``.delay()``
sends (a fresh id each, a real envelope from ``Client.encode``) on a raw redis-py connection,
after ``CONFIG RESETSTAT``, and reads ``INFO commandstats``: ``usec_per_call`` of ``evalsha``
(the whole script, its commands included) and of each command the script ran, per enqueue.

Probes price the parts: ``return 1`` alone, the prelude followed by ``return 1`` (its per-call
setup), ``TIME`` alone, and the current script with no events channel (no ``PUBLISH``). Then
N ``task.delay()`` calls through the real client, and N ``LPUSH`` for the floor. Redis-side µs
are far steadier than wall-clock figures on a loaded host, but still inflate under load: compare
rows of one run, and take the minimum over ``--rounds``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import private_redis  # noqa: E402

from taskforge import Settings, Taskforge  # noqa: E402
from taskforge.broker import SOURCES, Ops, _with_prelude  # noqa: E402


def _prelude() -> str:
    from importlib import resources

    return (resources.files("taskforge") / "lua" / "_prelude.lua").read_text()


def _stats(r: redis.Redis) -> dict[str, dict[str, float]]:
    return {name: dict(v) for name, v in r.info("commandstats").items()}


def _enqueue_args(app: Taskforge, channel: str) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV (without the per-call id/token) of one ``noop.delay(1, "two")``."""
    task = app.registry.get("bench.noop")
    _, job = app.client.encode(task.s(1, "two"))
    ops = Ops(app.settings)
    gen = ops.enqueue("default", [job])
    call = next(gen)
    gen.close()
    args = list(call.args)
    args[0] = channel
    return list(call.keys), args


def run_variant(r: redis.Redis, source: str, keys: list[str], args: list[Any], n: int) -> dict[str, Any]:
    sha = r.script_load(source)
    r.flushdb()
    r.config_resetstat()
    base_id = args[3]
    for i in range(n):
        a = list(args)
        a[2] = os.urandom(8).hex()
        a[3] = f"{base_id}-{i}"
        r.evalsha(sha, len(keys), *keys, *a)
    stats = _stats(r)
    ev = stats.get("cmdstat_evalsha", {"usec_per_call": 0.0, "calls": 0})
    inner = {k[8:]: (v["calls"] / n, v["usec_per_call"]) for k, v in stats.items()
             if k not in ("cmdstat_evalsha", "cmdstat_config", "cmdstat_flushdb",
                          "cmdstat_script", "cmdstat_info")}  # fmt: skip
    return {"evalsha_us": ev["usec_per_call"], "inner": inner}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], help="name=path.lua (a body)")
    parser.add_argument("--no-delay", action="store_true", help="skip the task.delay() row")
    args = parser.parse_args(argv)

    prelude = _prelude()
    variants: dict[str, str] = {
        "return 1": "return 1",
        "prelude + return 1": _with_prelude(prelude, "return 1"),
        "TIME only": "local t = redis.call('TIME') return 1",
        "current": SOURCES["enqueue"],
    }
    for spec in args.variant:
        name, _, path = spec.partition("=")
        variants[name] = _with_prelude(prelude, Path(path).read_text())

    with private_redis() as url:
        app = Taskforge(Settings(redis_url=url, prefix="sc"))

        @app.task(name="bench.noop", max_retries=0)
        def noop(a: int, b: str) -> None:
            """Does nothing."""

        r = redis.Redis.from_url(url, decode_responses=True)
        keys, eargs = _enqueue_args(app, app.settings.events_channel)
        rows: dict[str, list[float]] = {}
        inner: dict[str, dict[str, tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for name, source in variants.items():
                for channel in ([app.settings.events_channel, ""] if name == "current" else
                                [app.settings.events_channel]):  # fmt: skip
                    label = name if channel else f"{name}, no channel (no PUBLISH)"
                    eargs[0] = channel
                    out = run_variant(r, source, keys, eargs, args.n)
                    rows.setdefault(label, []).append(out["evalsha_us"])
                    inner[label] = out["inner"]
            r.flushdb()
            r.config_resetstat()
            for i in range(args.n):
                r.lpush("sc:floor", "x")
            rows.setdefault("LPUSH (floor)", []).append(_stats(r)["cmdstat_lpush"]["usec_per_call"])
            if not args.no_delay:
                r.flushdb()
                r.config_resetstat()
                for _ in range(args.n):
                    noop.delay(1, "two")
                st = _stats(r)
                rows.setdefault("task.delay() (evalsha)", []).append(
                    st["cmdstat_evalsha"]["usec_per_call"]
                )
        print(f"load average: {os.getloadavg()}   N = {args.n}, rounds = {args.rounds}")
        print("| variant | Redis µs per call, min | median |")
        print("|---|---|---|")
        for label, values in rows.items():
            print(f"| {label} | {min(values):.2f} | {statistics.median(values):.2f} |")
        print("\ncommands each script ran per call (calls/enqueue, µs per call):")
        for label, cmds in inner.items():
            shown = ", ".join(f"{c} {k:.0f}×{us:.2f}" for c, (k, us) in sorted(cmds.items()))
            print(f"  {label}: {shown or '-'}")


if __name__ == "__main__":
    main()
