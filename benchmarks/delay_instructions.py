"""Client instructions per ``.delay()`` / ``await .adelay()``, under valgrind's callgrind.

    python benchmarks/delay_instructions.py --n 2000      # private redis-server; a few minutes

A load-independent figure for the client side of a one-call enqueue: the same script runs twice
under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``), once making N calls and once making
none, each after the same warm-up (the app built, one call made); the difference of the two
processes' instruction totals over N is the cost of one call (the Python interpreter's own work
included: that is what a call costs). Needs valgrind. The ``.delay()`` figure repeats; the
``.adelay()`` one grows with the time the reply takes (the event loop turns while it waits),
so compare it over several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _inner(url: str, n: int, kind: str) -> None:
    from taskforge import Settings, Taskforge

    app = Taskforge(Settings(redis_url=url, prefix="di"))

    @app.task(name="bench.add", max_retries=0)
    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    if kind == "delay":
        add.delay(1, 2)  # warm: the queue announced, scripts loaded, the lane's connection
        for _ in range(n):
            add.delay(1, 2)
    else:

        async def loop() -> None:
            await add.adelay(1, 2)
            for _ in range(n):
                await add.adelay(1, 2)

        asyncio.run(loop())


def _instructions(url: str, n: int, kind: str) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           __file__, "--inner", "--url", url, "--n", str(n), "--kind", kind]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--kind", choices=("delay", "adelay", "both"), default="both")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        _inner(args.url, args.n, args.kind)
        return
    from bench import private_redis

    kinds = ("delay", "adelay") if args.kind == "both" else (args.kind,)
    with private_redis() as url:
        for kind in kinds:
            per_call = (_instructions(url, args.n, kind) - _instructions(url, 0, kind)) / args.n
            print(f"{kind}: {per_call:,.0f} client instructions per call (N = {args.n:,})")


if __name__ == "__main__":
    main()
