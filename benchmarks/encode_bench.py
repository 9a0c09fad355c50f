"""The producer's per-job encode cost (``Client.encode``: envelope JSON, no Redis), by payload.

    python benchmarks/encode_bench.py [--n 50000] [--rounds 5]

Prints a table of µs per job (median of the rounds) for plain JSON arguments, and for typed
ones (datetime, UUID, Decimal, bytes, an enum, a pydantic model) that take the typed path.
Pure CPU: run it on a quiet machine, or compare medians from the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel

from taskforge import SerializationError, Settings, Taskforge
from taskforge.client import Client


class Color(Enum):
    RED = "red"


class Order(BaseModel):
    id: int
    total: Decimal


def payloads() -> dict[str, Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]]:
    """Argument sets by label: each returns ``(args, kwargs)`` for one ``add.s`` call."""
    when = datetime(2030, 1, 1, tzinfo=UTC)
    ident = uuid.UUID(int=7)
    return {
        "plain: (1, 2)": lambda: ((1, 2), {}),
        "plain: str + dict": lambda: (("user-42", {"plan": "pro", "seats": 5}), {}),
        "typed: datetime + UUID": lambda: ((when, ident), {}),
        "typed: Decimal + bytes + enum": lambda: ((Decimal("9.99"), b"\x00\xff", Color.RED), {}),
        "typed: pydantic model": lambda: ((Order(id=1, total=Decimal("5")),), {}),
    }


def measure(client: Client, call_of: Callable[[], Any], n: int) -> float:
    """µs per ``Client.encode`` over ``n`` calls."""
    calls = [call_of() for _ in range(n)]
    start = time.perf_counter()
    for call in calls:
        client.encode(call)
    return (time.perf_counter() - start) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    app = Taskforge(Settings(redis_url="memory://encode-bench"))

    @app.task(name="bench.any")
    def anything(*values: Any) -> None: ...

    client = app.client
    print(f"{'payload':<34} {'µs/job (median)':>16} {'min':>8}")
    for label, make in payloads().items():
        values, kwargs = make()

        def call(values: tuple[Any, ...] = values, kwargs: dict[str, Any] = kwargs) -> Any:
            return anything.s(*values, **kwargs)

        try:
            samples = [measure(client, call, args.n) for _ in range(args.rounds)]
        except SerializationError:
            print(f"{label:<34} {'refused':>16}")
            continue
        print(f"{label:<34} {statistics.median(samples):>16.2f} {min(samples):>8.2f}")


if __name__ == "__main__":
    main()
