"""Redis bytes per waiting job: today's record against the compact layout proposed for the next
round (benchmarks/README.md, "Memory per waiting job"). A prototype outside the product: the
proposed records are written here by plain ``HSET``/``RPUSH``, as the new ``enqueue.lua`` would.

    python benchmarks/memory_layout.py                  # private redis-server; 10,000 and 100,000
    python benchmarks/memory_layout.py --n 10000 --n 1000000

Each figure is ``INFO memory`` ``used_memory`` after writing N waiting jobs minus before, / N,
on an emptied private server (``FLUSHALL`` between layouts: never run it against a shared one).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
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
#: Redis' default hash-max-listpack-value: a longer value makes the whole hash a hashtable.
LISTPACK_VALUE_BYTES = 64
#: Arguments of the three job shapes: none; two small ints; one 100-character string.
SHAPES: dict[str, tuple[Any, ...]] = {
    "no-op": (),
    "add(1, 2)": (1, 2),
    "100-char arg": ("x" * 100,),
}


def compact_id() -> str:
    """96 random bits as 16 base64url characters (today: 128 bits as 32 hex characters)."""
    return base64.urlsafe_b64encode(os.urandom(12)).decode()


def write_current(url: str, n: int, args: tuple[Any, ...]) -> None:
    """Today's layout, written by the product itself (``enqueue_many``)."""
    app = Taskforge(Settings(redis_url=url, prefix="tf"))

    @app.task(name="bench.noop")
    def noop(*a: Any) -> None:
        """A task."""

    for done in range(0, n, CHUNK):
        app.enqueue_many([noop.s(*args) for _ in range(min(CHUNK, n - done))])
    app.client.close()


def write_compact(
    url: str, n: int, args: tuple[Any, ...], *, id_of: Callable[[], str], spill: bool = False
) -> None:
    """The proposed layout: one small listpack hash per job and its id in the ready list.

    Fields: ``t`` task name, ``s`` status (one letter), ``c`` created ms (an integer: listpack
    stores it in 8 bytes), ``a``/``k`` arguments only when there are any (``spill``: arguments
    over the 64-byte listpack value limit go to a string key of their own, ``<record>:a``, so
    the record stays a listpack); priority, attempts,
    deliveries, enqueued/run-at times and every task option are left out while they equal
    the defaults (normal priority is the list the id sits in; 0; the created time; the task's
    registered options, which the worker has).
    """
    client = redis.Redis.from_url(url)
    args_json = json.dumps(list(args), separators=(",", ":")) if args else ""
    ready = "tf:{default}:ready:normal"
    for done in range(0, n, CHUNK):
        pipe = client.pipeline(transaction=False)
        ids = [id_of() for _ in range(min(CHUNK, n - done))]
        now = int(time.time() * 1000)
        for job_id in ids:
            fields: dict[str, Any] = {"t": "bench.noop", "s": "q", "c": now}
            key = f"tf:{{default}}:j:{job_id}"
            if spill and len(args_json) > LISTPACK_VALUE_BYTES:
                pipe.set(key + ":a", args_json)
            elif args_json:
                fields["a"] = args_json
            pipe.hset(key, mapping=fields)
        pipe.rpush(ready, *ids)
        pipe.execute()
    client.close()


LAYOUTS: dict[str, Callable[[str, int, tuple[Any, ...]], None]] = {
    "today (enqueue_many)": write_current,
    "compact, 32-hex ids": lambda u, n, a: write_compact(
        u, n, a, id_of=lambda: os.urandom(16).hex()
    ),
    "compact, 16-char ids": lambda u, n, a: write_compact(u, n, a, id_of=compact_id),
    "compact, 16-char ids, long args spilled": lambda u, n, a: write_compact(
        u, n, a, id_of=compact_id, spill=True
    ),
}


def measure(url: str, layout: str, n: int, args: tuple[Any, ...]) -> dict[str, Any]:
    """Bytes per waiting job of one layout, shape and N."""
    client = redis.Redis.from_url(url)
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    LAYOUTS[layout](url, n, args)
    seconds = time.perf_counter() - started
    after = int(client.info("memory")["used_memory"])
    sample = next(client.scan_iter(match="tf:*j*:*", count=1000), None)
    encoding = client.object("encoding", sample) if sample else b"?"
    client.flushall()
    client.close()
    text = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
    return {"bytes_per_job": (after - before) / n, "write_s": seconds, "encoding": text}


def main() -> None:
    """Print a table of bytes per waiting job: layout x job shape x N."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, action="append", help="jobs (repeatable)")
    ns = p.parse_args().n or [10_000, 100_000]
    with private_redis() as url:
        print("| layout | job | N | bytes per waiting job | beyond the no-op | record encoding |")
        print("|---|---|---|---|---|---|")
        for n in ns:
            for layout in LAYOUTS:
                base = None
                for shape, args in SHAPES.items():
                    r = measure(url, layout, n, args)
                    base = r["bytes_per_job"] if base is None else base
                    extra = "" if shape == "no-op" else f"+{r['bytes_per_job'] - base:.0f}"
                    print(f"| {layout} | {shape} | {n:,} | {r['bytes_per_job']:.0f} | {extra} |"
                          f" {r['encoding']} |")  # fmt: skip


if __name__ == "__main__":
    main()
