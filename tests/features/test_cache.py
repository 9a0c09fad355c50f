"""The cache service on real Redis (and memory://): keys, TTLs, stampede protection, degradation."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import redis

from taskforge import BrokerError, CacheService, SerializationError, Settings, cached
from taskforge.cache import CACHE_TTLS, SyncCacheService, configure_cache
from taskforge.errors import ConfigurationError
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test Redis, to look at what the cache wrote."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def ns(prefix: str) -> str:
    """This test's cache namespace (instead of the shared ``cache``)."""
    return f"{prefix}:cache"


@pytest.fixture
async def cache(redis_url: str, ns: str) -> AsyncIterator[CacheService]:
    service = CacheService(Settings(redis_url=redis_url), namespace=ns)
    yield service
    await service.aclose()


async def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll an async predicate until it is truthy (bounded)."""
    with anyio.fail_after(timeout_s):
        while not (value := await predicate()):
            await anyio.sleep(0.01)
    return value


# ------------------------------------------------------------------------------- keys


def test_keys_follow_the_guides_namespaces() -> None:
    cache = CacheService(Settings(redis_url="memory://"))

    tenant_key = cache.key("workflow_def:abc-456", tenant_id="123")
    global_key = cache.key("workflow_def:global-workflow-1")

    assert tenant_key == "cache:tenant:123:workflow_def:abc-456"
    assert global_key == "cache:workflow_def:global-workflow-1"


@pytest.mark.parametrize("bad", ["a:b", ""])
def test_tenant_ids_that_could_alias_another_tenant_are_refused(bad: str) -> None:
    cache = CacheService(Settings(redis_url="memory://"))

    with pytest.raises(ConfigurationError):
        cache.key("workflow_def:x", tenant_id=bad)


def test_a_global_key_cannot_reach_into_a_tenants_namespace() -> None:
    cache = CacheService(Settings(redis_url="memory://"))

    with pytest.raises(ConfigurationError):
        cache.key("tenant:123:workflow_def:x")


async def test_tenants_do_not_see_each_others_values(
    cache: CacheService, raw: redis.Redis, ns: str
) -> None:
    await cache.set("workflow_def:wf", {"owner": "t1"}, tenant_id="t1")
    await cache.set("workflow_def:wf", {"owner": "t2"}, tenant_id="t2")
    await cache.set("workflow_def:wf", {"owner": "global"})

    assert await cache.get("workflow_def:wf", tenant_id="t1") == {"owner": "t1"}
    assert await cache.get("workflow_def:wf", tenant_id="t2") == {"owner": "t2"}
    assert await cache.get("workflow_def:wf") == {"owner": "global"}
    assert await cache.get("workflow_def:wf", tenant_id="t3") is None
    assert json.loads(raw.get(f"{ns}:tenant:t1:workflow_def:wf") or "") == {"owner": "t1"}
    await cache.invalidate("workflow_def:wf", tenant_id="t1")
    assert await cache.get("workflow_def:wf", tenant_id="t1") is None
    assert await cache.get("workflow_def:wf", tenant_id="t2") == {"owner": "t2"}


# ------------------------------------------------------------------------------- TTLs


@pytest.mark.parametrize(("cache_type", "ttl_s"), sorted(CACHE_TTLS.items()))
async def test_each_cache_type_gets_its_default_ttl(
    cache: CacheService, raw: redis.Redis, cache_type: str, ttl_s: float
) -> None:
    await cache.set(f"{cache_type}:item", {"v": 1}, tenant_id="t1")

    pttl = raw.pttl(cache.key(f"{cache_type}:item", tenant_id="t1"))

    # Jitter (10% by default) only ever shortens a TTL.
    assert ttl_s * 1000 * 0.9 - 50 <= pttl <= ttl_s * 1000


async def test_explicit_ttl_and_unknown_types(redis_url: str, ns: str, raw: redis.Redis) -> None:
    cache = CacheService(Settings(redis_url=redis_url), namespace=ns, ttl_jitter=0, default_ttl=77)

    await cache.set("workflow_def:a", 1, ttl=10)
    await cache.set("misc:b", 2)
    await cache.set("c", 3, cache_type="rate_limit")

    assert 9_000 < raw.pttl(f"{ns}:workflow_def:a") <= 10_000
    assert 76_000 < raw.pttl(f"{ns}:misc:b") <= 77_000
    assert 59_000 < raw.pttl(f"{ns}:rate_limit:c") <= 60_000
    assert await cache.ttl("misc:b") == pytest.approx(77, abs=1)
    assert await cache.ttl("absent") is None


# ------------------------------------------------------------------------------- encoding


async def test_values_are_json_and_non_json_values_are_refused(
    cache: CacheService, raw: redis.Redis
) -> None:
    await cache.set("api_response:list", [1, "two", {"three": 3.0}, None])

    assert raw.get(cache.key("api_response:list")) == '[1,"two",{"three":3.0},null]'
    with pytest.raises(SerializationError):
        await cache.set("api_response:bad", {1, 2})


async def test_pickle_only_when_opted_in(redis_url: str, ns: str) -> None:
    cache = CacheService(Settings(redis_url=redis_url), namespace=ns, serializer="pickle")
    value = {"ids": {1, 2, 3}, "raw": b"\x00\xff\x80"}

    await cache.set("api_response:pickled", value)

    assert await cache.get("api_response:pickled") == value
    await cache.aclose()


async def test_a_cached_none_is_a_hit(cache: CacheService) -> None:
    calls = 0

    def source() -> None:
        nonlocal calls
        calls += 1

    assert await cache.get_or_fetch("api_response:none", source) is None
    assert await cache.get_or_fetch("api_response:none", source) is None

    assert calls == 1


# ------------------------------------------------------------------------------- get_or_fetch


async def test_get_or_fetch_calls_the_source_once_then_serves_the_cache(
    cache: CacheService,
) -> None:
    calls: list[str] = []

    async def fetch_async() -> dict[str, str]:
        calls.append("async")
        return {"from": "db"}

    def fetch_sync() -> dict[str, int]:
        calls.append("sync")
        return {"n": 9}

    first = await cache.get_or_fetch("workflow:123", fetch_async, 3600, "tenant-1")
    second = await cache.get_or_fetch("workflow:123", fetch_async, 3600, "tenant-1")
    third = await cache.get_or_fetch("workflow:9", fetch_sync)

    assert first == second == {"from": "db"}
    assert third == {"n": 9}
    assert calls == ["async", "sync"]
    assert cache.stats.hits == 1
    assert cache.stats.misses == 2
    assert cache.stats.hit_rate == pytest.approx(1 / 3)


async def test_concurrent_misses_in_one_process_call_the_source_once(cache: CacheService) -> None:
    calls = 0
    results: list[Any] = []

    async def slow_source() -> list[int]:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)  # a slow database: everyone else misses meanwhile
        return [1, 2, 3]

    async def caller() -> None:
        results.append(await cache.get_or_fetch("api_response:hot", slow_source))

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(caller)

    assert calls == 1
    assert results == [[1, 2, 3]] * 100
    results[0].append(4)  # callers get their own copies
    assert results[1] == [1, 2, 3]


STAMPEDE = r"""
import json, sys
import anyio, redis.asyncio
from taskforge.cache import CacheService
from taskforge.settings import Settings

url, ns, counter, barrier, callers = sys.argv[1:6]

async def main():
    cache = CacheService(Settings(redis_url=url), namespace=ns)
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)

    async def source():
        await client.incr(counter)
        await anyio.sleep(0.3)  # a slow source: the other process misses meanwhile
        return {"answer": 42}

    await client.incr(barrier)
    with anyio.fail_after(10):
        while int(await client.get(barrier)) < 2:
            await anyio.sleep(0.005)
    results = []

    async def caller():
        results.append(await cache.get_or_fetch("api_response:hot", source, tenant_id="t1"))

    async with anyio.create_task_group() as tg:
        for _ in range(int(callers)):
            tg.start_soon(caller)
    print(json.dumps({"results": results, "stats": cache.stats.as_dict()}))

anyio.run(main)
"""


def test_200_concurrent_misses_across_two_processes_call_the_source_once(
    redis_url: str, ns: str, prefix: str, raw: redis.Redis
) -> None:
    counter, barrier = f"{prefix}:source-calls", f"{prefix}:barrier"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", STAMPEDE, redis_url, ns, counter, barrier, "100"]

    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]

    assert [p.returncode for p in procs] == [0, 0]
    assert raw.get(counter) == "1"
    assert all(o["results"] == [{"answer": 42}] * 100 for o in outputs)
    assert sum(o["stats"]["misses"] for o in outputs) == 1


async def test_a_failing_source_frees_the_lock_for_the_next_caller(cache: CacheService) -> None:
    async def broken() -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        await cache.get_or_fetch("api_response:x", broken)
    with anyio.fail_after(2):  # far below the 10 s lock: it was released, not left to expire
        value = await cache.get_or_fetch("api_response:x", lambda: "ok")

    assert value == "ok"


async def test_a_stale_value_is_served_while_one_caller_refreshes_it(
    redis_url: str, ns: str, raw: redis.Redis
) -> None:
    cache = CacheService(Settings(redis_url=redis_url), namespace=ns, ttl_jitter=0, stale_ttl=30)
    await cache.get_or_fetch("api_response:feed", lambda: "v1", ttl=0.2)
    key = cache.key("api_response:feed")
    await wait_until(lambda: _async(raw.pttl(key) <= 30_000))  # fresh period over
    release = anyio.Event()
    refreshes = 0

    async def refresh() -> str:
        nonlocal refreshes
        refreshes += 1
        await release.wait()
        return "v2"

    seen: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_append, seen, cache.get_or_fetch("api_response:feed", refresh, 0.2, None))
        await wait_until(lambda: _async(refreshes == 1))
        for _ in range(3):
            seen.append(await cache.get_or_fetch("api_response:feed", refresh))
        release.set()

    assert seen == ["v1", "v1", "v1", "v2"]
    assert refreshes == 1
    assert await cache.get("api_response:feed") == "v2"
    await cache.aclose()


async def _append(out: list[T], awaitable: Any) -> None:
    out.append(await awaitable)


async def _async(value: T) -> T:
    return value


# ------------------------------------------------------------------------------- patterns


def _fill(client: redis.Redis, keys: list[str]) -> None:
    for start in range(0, len(keys), 10_000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 10_000]:
            pipe.set(key, "1", ex=600)
        pipe.execute()


def _commandstats(client: redis.Redis) -> dict[str, int]:
    return {k: v["calls"] for k, v in client.info("commandstats").items()}


@pytest.mark.parametrize("n_keys", [20_000, pytest.param(100_000, marks=pytest.mark.slow)])
async def test_pattern_invalidation_scans_in_batches_without_keys(n_keys: int) -> None:
    server = RedisServer(args=["--slowlog-log-slower-than", "50000"]).start()
    client = server.client()
    try:
        cache = CacheService(Settings(redis_url=server.url))
        doomed = [cache.key(f"api_response:page:{i}", tenant_id="t1") for i in range(n_keys)]
        kept = [cache.key(f"api_response:page:{i}", tenant_id="t2") for i in range(100)]
        kept += [cache.key(f"api_response:page:{i}") for i in range(100)]
        kept += [cache.key("workflow_def:wf", tenant_id="t1")]
        _fill(client, doomed + kept)
        before = _commandstats(client)

        removed = await cache.invalidate_pattern("api_response:*", tenant_id="t1")

        after = _commandstats(client)
        assert removed == n_keys
        assert client.dbsize() == len(kept)
        assert after.get("cmdstat_keys", 0) == before.get("cmdstat_keys", 0)
        assert after["cmdstat_scan"] - before.get("cmdstat_scan", 0) >= n_keys // 1000
        assert after["cmdstat_unlink"] - before.get("cmdstat_unlink", 0) >= n_keys // 1000
        assert [e["command"] for e in client.slowlog_get(128)] == []  # nothing took 50 ms
        await cache.aclose()
    finally:
        client.close()
        server.cleanup()


async def test_global_patterns_leave_tenants_alone_unless_asked(cache: CacheService) -> None:
    await cache.set("api_response:a", 1)
    await cache.set("api_response:a", 1, tenant_id="t1")
    await cache.set("api_response:a", 1, tenant_id="t2")

    assert await cache.invalidate_pattern("*") == 1
    assert await cache.get("api_response:a", tenant_id="t1") == 1
    assert await cache.invalidate_pattern("api_response:*", all_tenants=True) == 2


async def test_tenant_patterns_escape_glob_characters_in_the_namespace(
    redis_url: str, prefix: str
) -> None:
    star = CacheService(Settings(redis_url=redis_url), namespace=f"{prefix}:c[a]che")
    await star.set("x:1", 1)

    assert await star.invalidate_pattern("x:*") == 1
    await star.aclose()


# ------------------------------------------------------------------------------- degradation


async def test_with_redis_stopped_the_source_answers_and_one_warning_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer().start()
    settings = Settings(redis_url=server.url, connect_retries=0, socket_connect_timeout_s=1)
    cache = CacheService(settings, outage_retry_s=0.05)
    calls = 0

    def source() -> int:
        nonlocal calls
        calls += 1
        return calls

    try:
        await cache.set("api_response:k", "cached")
        server.stop()
        caplog.set_level(logging.INFO, logger="taskforge.cache")

        values = [await cache.get_or_fetch(f"api_response:{i}", source) for i in range(5)]
        for _ in range(3):
            await anyio.sleep(0.06)  # past the back-off: Redis is tried (and fails) again
            values.append(await cache.get_or_fetch("api_response:again", source))
        missing = await cache.get("api_response:k", default="default")
        written = await cache.set("api_response:k", "new")
        with pytest.raises(BrokerError):
            await cache.invalidate("api_response:k")

        assert values == [1, 2, 3, 4, 5, 6, 7, 8]
        assert (missing, written) == ("default", False)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "serving from the source" in warnings[0].getMessage()

        server.start()
        await wait_until(lambda: cache.set("api_response:k", "back"))
        assert await cache.get_or_fetch("api_response:k", source) == "back"
        assert [r for r in caplog.records if "answers again" in r.getMessage()]
    finally:
        await cache.aclose()
        server.cleanup()


def test_sync_service_degrades_the_same_way(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer().start()
    settings = Settings(redis_url=server.url, connect_retries=0, socket_connect_timeout_s=1)
    cache = SyncCacheService(settings)
    try:
        assert cache.set("api_response:k", "cached")
        server.stop()

        values = [cache.get_or_fetch(f"api_response:{i}", lambda: "source") for i in range(3)]
        missing = cache.get("api_response:k")
        written = cache.set("api_response:k", "new")

        assert values == ["source"] * 3
        assert (missing, written) == (None, False)
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        with pytest.raises(BrokerError):
            cache.invalidate_pattern("*")
    finally:
        cache.close()
        server.cleanup()


# ------------------------------------------------------------------------------- @cached


async def test_cached_async_function_keys_on_arguments_and_tenant(cache: CacheService) -> None:
    calls: list[tuple[str, str]] = []

    @cached(ttl=3600, key_prefix="workflow", cache=cache)
    async def get_workflow(
        workflow_id: str, tenant_id: str, verbose: bool = False
    ) -> dict[str, str]:
        calls.append((workflow_id, tenant_id))
        return {"id": workflow_id, "tenant": tenant_id}

    a = await get_workflow("123", tenant_id="tenant-1")
    b = await get_workflow(workflow_id="123", tenant_id="tenant-1", verbose=False)
    c = await get_workflow("123", tenant_id="tenant-2")
    invalidated = await get_workflow.invalidate("123", tenant_id="tenant-1")
    d = await get_workflow("123", tenant_id="tenant-1")

    assert a == b == d == {"id": "123", "tenant": "tenant-1"}
    assert c == {"id": "123", "tenant": "tenant-2"}
    assert invalidated is True
    assert calls == [("123", "tenant-1"), ("123", "tenant-2"), ("123", "tenant-1")]
    assert vars(get_workflow)["__name__"] == "get_workflow"  # functools.update_wrapper


async def test_cached_keys_are_under_the_prefix_so_patterns_reach_them(
    cache: CacheService,
) -> None:
    @cached(key_prefix="workflow_def", cache=cache)
    async def definition(workflow_id: str, tenant_id: str) -> str:
        return workflow_id

    await definition("a", tenant_id="t1")
    await definition("b", tenant_id="t1")

    assert await cache.invalidate_pattern("workflow_def:*", tenant_id="t1") == 2


def test_cached_sync_function_and_methods(redis_url: str, ns: str) -> None:
    service = SyncCacheService(Settings(redis_url=redis_url), namespace=ns)
    calls = 0

    class Repo:
        @cached(ttl=60, cache=service.aio)
        def load(self, item_id: int) -> dict[str, int]:
            nonlocal calls
            calls += 1
            return {"id": item_id}

    first = Repo().load(7)
    second = Repo().load(item_id=7)  # another instance: self is not part of the key
    Repo.load.invalidate(Repo(), 7)
    third = Repo().load(7)

    assert first == second == third == {"id": 7}
    assert calls == 2
    with pytest.raises(SerializationError):
        Repo().load(object())
    service.close()


def test_cached_uses_the_process_wide_service_when_none_is_given(any_url: str, ns: str) -> None:
    configure_cache(Settings(redis_url=any_url), namespace=ns)
    calls = 0

    @cached(ttl=60)
    def square(x: int) -> int:
        nonlocal calls
        calls += 1
        return x * x

    try:
        assert [square(3), square(3)] == [9, 9]
        assert calls == 1
    finally:
        configure_cache(Settings(redis_url="memory://"))


# ------------------------------------------------------------------------------- sync service


def test_sync_service_concurrent_misses_in_threads_call_the_source_once(
    any_url: str, ns: str
) -> None:
    service = SyncCacheService(Settings(redis_url=any_url), namespace=ns)
    calls = 0
    started = threading.Barrier(20)
    results: list[Any] = []

    def source() -> str:
        nonlocal calls
        calls += 1
        time.sleep(0.05)  # a slow database call
        return "value"

    def caller() -> None:
        started.wait(5)
        results.append(service.get_or_fetch("api_response:t", source, tenant_id="t1"))

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert calls == 1
    assert results == ["value"] * 20
    assert service.get("api_response:t", tenant_id="t1") == "value"
    assert service.invalidate_pattern("api_response:*", tenant_id="t1") == 1
    service.close()


def test_sync_service_refuses_async_sources(any_url: str, ns: str) -> None:
    service = SyncCacheService(Settings(redis_url=any_url), namespace=ns)

    async def source() -> int:
        return 1

    with pytest.raises(TypeError, match="plain fetch_func"):
        service.get_or_fetch("api_response:x", source)
    service.close()


# ------------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    "example",
    ["cache_guide_samples.py", "session_store.py", "cache_warming.py", "cache_invalidation.py"],
)
def test_examples_run(example: str, redis_url: str, prefix: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url}
    env["TASKFORGE_PREFIX"] = prefix

    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
