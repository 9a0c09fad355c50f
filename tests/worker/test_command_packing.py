"""The worker's asyncio connections pack commands with hiredis: the same bytes redis-py's own
packer writes, and what hiredis refuses still goes through redis-py's packer."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio

from taskforge import Settings
from taskforge.driver.packing import in_c, packing_in_c
from taskforge.protocol.brokers import AsyncBroker

ARGS: list[tuple[Any, ...]] = [
    ("EVALSHA", "ab" * 20, 2, "q:{a}", "q:{b}", 1, -7, 0.25, 1e100, "", "é ü", b"\xff\x00"),
    ("SET", "k", "x" * 10_000),
    ("SCRIPT LOAD", "return 1"),  # redis-py splits a first argument with a space
    ("SET", "k", "\udcff"),  # a lone surrogate: hiredis refuses, redis-py's packer decides
]


@pytest.mark.parametrize("command", ARGS)
def test_packed_bytes_equal_redis_pys_own(command: tuple[Any, ...]) -> None:
    client = redis.asyncio.Redis(encoding_errors="surrogateescape")
    plain = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    packing_in_c(client)
    fast = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]

    ours, theirs = b"".join(fast.pack_command(*command)), b"".join(plain.pack_command(*command))

    assert type(fast) is not type(plain)
    assert ours == theirs


def test_hiredis_declines_what_redis_py_must_decide() -> None:
    assert in_c(("SCRIPT LOAD", "return 1")) is None
    assert in_c(("SET", "k", True)) is None  # redis-py refuses a bool with its own message
    assert in_c(("SET", "k", "\udcff")) is None


def test_a_worker_broker_round_trips_through_c_packed_connections(
    settings_factory: Any,
) -> None:
    settings: Settings = settings_factory()
    key, value = settings.prefix + ":k", "é " + "x" * 7000

    async def scenario() -> tuple[str, Any]:
        broker = AsyncBroker(settings)
        try:
            await broker.client.set(key, value)
            raw = await broker.client.get(key)
            assert isinstance(broker.client, redis.asyncio.Redis)
            return broker.client.connection_pool.connection_class.__module__, raw
        finally:
            await broker.aclose()

    packer, raw = anyio.run(scenario)

    assert packer == "taskforge.driver.packing"
    assert raw in (value, value.encode())
