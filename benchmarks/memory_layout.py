"""Redis bytes per waiting job, as the product writes them (benchmarks/README.md, "The compact
record: measured").

    python benchmarks/memory_layout.py                  # private redis-server; 10,000 and 100,000
    python benchmarks/memory_layout.py --n 10000 --n 1000000 --no-delay

Jobs are written by whichever ``taskforge`` this interpreter imports (run it from another
checkout's folder to measure that one: ``cd ../old && python benchmarks/memory_layout.py``), in
two ways: ``enqueue_many`` (one script call per 1,000 jobs) and one ``.delay()`` per job. Three
shapes: a no-op job, ``add(1, 2)``, and one 100-character argument. Each figure is
``INFO memory`` ``used_memory`` after writing N waiting jobs minus before, / N, on an emptied
private server (``FLUSHALL`` between runs: never run it against a shared one). The table also
shows the record's encoding (``listpack`` or ``hashtable``) and the per-call write rate
(wall clock: noisy on a shared host).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import private_redis

from taskforge import Settings, Taskforge

CHUNK = 1000
#: Arguments of the three job shapes: none; two small ints; one 100-character string.
SHAPES: dict[str, tuple[Any, ...]] = {
    "no-op": (),
    "add(1, 2)": (1, 2),
    "100-char arg": ("x" * 100,),
}


def _app(url: str) -> tuple[Taskforge, Any]:
    app = Taskforge(Settings(redis_url=url, prefix="tf"))

    @app.task(name="bench.noop")
    def noop(*a: Any) -> None:
        """A task."""

    return app, noop


def write_many(url: str, n: int, args: tuple[Any, ...]) -> None:
    """``enqueue_many`` in chunks of 1,000."""
    app, noop = _app(url)
    for done in range(0, n, CHUNK):
        app.enqueue_many([noop.s(*args) for _ in range(min(CHUNK, n - done))])
    app.client.close()


def write_delay(url: str, n: int, args: tuple[Any, ...]) -> None:
    """One ``.delay()`` per job."""
    app, noop = _app(url)
    for _ in range(n):
        noop.delay(*args)
    app.client.close()


WAYS: dict[str, Callable[[str, int, tuple[Any, ...]], None]] = {
    "enqueue_many": write_many,
    ".delay()": write_delay,
}


def measure(url: str, way: str, n: int, args: tuple[Any, ...]) -> dict[str, Any]:
    """Bytes per waiting job of one way of writing, shape and N."""
    client = redis.Redis.from_url(url)
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    WAYS[way](url, n, args)
    seconds = time.perf_counter() - started
    after = int(client.info("memory")["used_memory"])
    sample = next(client.scan_iter(match="tf:{default}:j*:*", count=1000), None)
    encoding = client.object("encoding", sample) if sample else b"?"
    client.flushall()
    client.close()
    text = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
    return {"bytes_per_job": (after - before) / n, "rate": n / seconds, "encoding": text}


def warm_up(url: str, ways: list[str]) -> None:
    """Write and drop one chunk each way before measuring: a fresh server keeps ~0.3 MB of its
    first writes (the scripts, the first clients' buffers) through ``FLUSHALL``, which would
    land on whichever figure comes first (~+30 bytes per job at N = 10,000)."""
    for way in ways:
        measure(url, way, CHUNK, ())


def main() -> None:
    """Print a table of bytes per waiting job: way x job shape x N."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, action="append", help="jobs (repeatable)")
    p.add_argument("--no-delay", action="store_true", help="enqueue_many only (large N)")
    opts = p.parse_args()
    ns = opts.n or [10_000, 100_000]
    ways = ["enqueue_many"] if opts.no_delay else list(WAYS)
    with private_redis() as url:
        warm_up(url, ways)
        print("| written by | job | N | bytes per waiting job | beyond the no-op | record |"
              " jobs/s written |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for n in ns:
            for way in ways:
                base = None
                for shape, args in SHAPES.items():
                    r = measure(url, way, n, args)
                    base = r["bytes_per_job"] if base is None else base
                    extra = "" if shape == "no-op" else f"{r['bytes_per_job'] - base:+.0f}"
                    print(f"| {way} | {shape} | {n:,} | {r['bytes_per_job']:.0f} | {extra} |"
                          f" {r['encoding']} | {r['rate']:,.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
