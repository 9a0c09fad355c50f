"""Where a ``.delay()`` goes on the client: µs per call of each layer, by subtraction.

    python benchmarks/delay_split.py --n 20000              # private redis-server
    python benchmarks/delay_split.py --n 20000 --profile    # and cProfile's top functions

Rows, each the median of ``--rounds`` loops of N calls on one warm connection:

* ``task._call`` (argument check: the arguments bound to the function's signature)
* ``Client.encode`` (the envelope JSON, job id, options)
* ``Ops.enqueue`` (script arguments and the token) + redis-py ``pack_command``
* raw ``EVALSHA`` round trip (packed command sent, reply read, on a connection in hand)
* raw ``LPUSH`` round trip on the same kind of connection (the floor)
* ``task.delay()`` whole, and ``await task.adelay()`` whole with redis.asyncio ``LPUSH``

The difference between ``delay()`` and the sum of the parts is the glue (the broker's request
loop, the hot lane, handles). Wall-clock and this process's CPU time: on a loaded host the CPU
column is the steadier one; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import private_redis

from taskforge import Settings, Taskforge
from taskforge.protocol.ops import Ops
from taskforge.protocol.scripts import SOURCES


def _loop_us(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    """Wall and CPU (this process's) µs per call."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile N delay() calls")
    args = parser.parse_args(argv)
    with private_redis() as url:
        _run(url, args)


def _run(url: str, args: argparse.Namespace) -> None:  # noqa: C901 (one closure per row)
    n = args.n
    app = Taskforge(Settings(redis_url=url, prefix="ds"))

    @app.task(name="bench.add", max_retries=0)
    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    client = app.client
    ops = Ops(app.settings)
    r = redis.Redis.from_url(url)
    conn = r.connection_pool.get_connection()
    sha = r.script_load(SOURCES["enqueue"])
    add.delay(1, 2)  # announce the queue, warm everything

    def call() -> Any:
        return add._call((1, 2), {})

    sig = call()

    def encode() -> Any:
        return client.encode(sig)

    _, job = encode()

    def pack() -> Any:
        gen = ops.enqueue("default", [job])
        req = next(gen)
        gen.close()
        return conn.pack_command("EVALSHA", sha, len(req.keys), *req.keys, *req.args)

    def evalsha() -> Any:
        gen = ops.enqueue("default", [job])
        req = next(gen)
        gen.close()
        a = list(req.args)
        a[3] = os.urandom(8).hex()  # a fresh id: a new record each time, as delay() writes
        conn.send_packed_command(conn.pack_command("EVALSHA", sha, len(req.keys), *req.keys, *a))
        return conn.read_response()

    def lpush() -> Any:
        conn.send_packed_command(conn.pack_command("LPUSH", "ds:floor", "x"))
        return conn.read_response()

    def delay() -> Any:
        return add.delay(1, 2)

    async def adelay_loop() -> tuple[tuple[float, float], tuple[float, float]]:
        ar = redis.asyncio.Redis.from_url(url)
        await ar.ping()
        await add.adelay(1, 2)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await add.adelay(1, 2)
        a = (time.perf_counter() - started) / n * 1e6, (time.process_time() - cpu) / n * 1e6
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await ar.lpush("ds:afloor", "x")
        b = (time.perf_counter() - started) / n * 1e6, (time.process_time() - cpu) / n * 1e6
        await ar.aclose()
        return a, b

    rows: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        r.flushdb()
        for name, fn in (("task._call (check args)", call), ("Client.encode", encode),
                         ("Ops.enqueue + pack_command", pack),
                         ("raw EVALSHA round trip (incl. the two above's pack)", evalsha),
                         ("raw LPUSH round trip", lpush), ("task.delay()", delay)):  # fmt: skip
            rows.setdefault(name, []).append(_loop_us(fn, n))
        a, b = asyncio.run(adelay_loop())
        rows.setdefault("await task.adelay()", []).append(a)
        rows.setdefault("redis.asyncio LPUSH", []).append(b)
        r.flushdb()
    print(f"load average: {os.getloadavg()}   N = {n}, rounds = {args.rounds}")
    print("| layer | wall µs per call, median | min | client CPU µs, median | min |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        wall, cpu = [v[0] for v in values], [v[1] for v in values]
        print(
            f"| {name} | {statistics.median(wall):.1f} | {min(wall):.1f} |"
            f" {statistics.median(cpu):.1f} | {min(cpu):.1f} |"
        )
    if args.profile:
        r.flushdb()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            add.delay(1, 2)
        prof.disable()
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(25)
    r.connection_pool.release(conn)


if __name__ == "__main__":
    main()
