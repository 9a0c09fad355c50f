"""taskforge on a real 3-primary Redis Cluster: the core end-to-end suite, and scale-out itself.

One cluster per module (``redis-server --cluster-enabled yes`` x3, then ``redis-cli --cluster
create``); every test isolates itself with its own key prefix. The core suite of
``tests/worker/test_worker.py`` (order, retries, timeouts, dead letters, events, results, cancel) is
re-run here against the cluster through the module's ``redis_url``.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import anyio
import pytest
from redis.crc import key_slot
from typer.testing import CliRunner

import tests.features.test_cron as cron_suite
import tests.worker.test_worker as core_suite
from taskforge import Admin, JobPriority, JobStatus, Settings, Taskforge, Worker, current_job
from taskforge.cache import CacheService
from taskforge.cli import cli
from taskforge.driver.connection import primaries, sync_client, topology
from taskforge.driver.requests import ScriptCall
from taskforge.driver.task_clients import TaskClients
from taskforge.errors import ConfigurationError, NotReplicatedError
from taskforge.health import health_check
from taskforge.metrics import MetricsExporter, WorkerMetrics
from taskforge.partition import Partitioned
from taskforge.protocol.brokers import AsyncBroker, SyncBroker
from taskforge.protocol.keys import QueueKeys
from taskforge.protocol.ops import Ops
from taskforge.protocol.records import NewJob
from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.anyio
AppFactory = Callable[..., Taskforge]

# The core end-to-end suites, collected again in this module so they run on the cluster (but
# not the command count: INFO commandstats is per node, and the jobs spread over three).
_PER_NODE = {"test_drain_costs_at_most_eight_redis_commands_per_job"}
for _suite, _names in (
    (core_suite, [n for n in vars(core_suite) if n.startswith("test_") and n not in _PER_NODE]),
    (cron_suite, ["test_racing_schedulers_enqueue_each_tick_exactly_once"]),
):
    for _name in _names:
        globals()[f"test_core_{_name[len('test_') :]}"] = getattr(_suite, _name)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A 3-primary cluster for this module."""
    try:
        deployment = LocalCluster(primaries=3).start()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"cannot start a local Redis Cluster: {exc}")
    yield deployment
    deployment.cleanup()


@pytest.fixture(scope="module")
def replicated_cluster() -> Iterator[LocalCluster]:
    """3 primaries with one replica each, for durable enqueues."""
    try:
        deployment = LocalCluster(primaries=3, replicas=1).start()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"cannot start a local Redis Cluster: {exc}")
    yield deployment
    deployment.cleanup()


@pytest.fixture(scope="module")
def redis_url(cluster: LocalCluster) -> str:
    """Overrides the session's single Redis: every fixture built on it now uses the cluster."""
    return cluster.url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _cluster_raw_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # The core suite peeks at keys with a plain client; on a cluster it needs a cluster client.
    monkeypatch.setattr(core_suite, "raw_redis", lambda app: sync_client(app.settings))


async def drain(app: Taskforge, queues: list[str], *, concurrency: int = 10) -> None:
    worker = Worker(app.settings, app.registry, queues=queues, concurrency=concurrency, burst=True)
    with anyio.fail_after(20):
        await worker.run()


def node_of(app: Taskforge, queue: str) -> str:
    """The primary (host:port) that serves ``queue``."""
    client = app.client.broker.client
    return str(client.get_node_from_key(QueueKeys(app.settings.prefix, queue).wake).name)  # type: ignore[union-attr]


# ------------------------------------------------------------------ connection


def test_cluster_url_and_cluster_nodes_variable_both_reach_the_cluster(
    cluster: LocalCluster, prefix: str
) -> None:
    from_url = Settings(redis_url=cluster.url, prefix=prefix)
    from_env = Settings.from_env({"REDIS_CLUSTER_NODES": cluster.nodes, "TASKFORGE_PREFIX": prefix})

    apps = [Taskforge(from_url), Taskforge(from_env)]
    handles = [app.call("x.y") for app in apps]
    first = apps[0].submit([handles[0]])[0]

    assert topology(from_env).kind == topology(from_url).kind == "cluster"
    assert apps[1].handle(first.id).status() is JobStatus.QUEUED
    assert len(primaries(apps[0].client.broker.client)) == 3
    for app in apps:
        app.client.close()


def test_cluster_urls_parse_hosts_auth_and_tls() -> None:
    plain = topology(Settings(redis_url="redis+cluster://a:7000,b:7001"))
    secure = topology(Settings(redis_url="rediss+cluster://u:s%40cret@a:7000,b"))

    assert plain.nodes == (("a", 7000), ("b", 7001))
    assert not plain.tls
    assert secure.nodes == (("a", 7000), ("b", 6379))
    assert (secure.username, secure.password, secure.tls) == ("u", "s@cret", True)
    with pytest.raises(ConfigurationError):
        topology(Settings(redis_url="redis+cluster://a:7000/3"))
    with pytest.raises(ConfigurationError):
        topology(Settings(redis_url="redis+cluster://a:port"))


# ------------------------------------------------------------------ one slot per operation


def test_every_queue_script_declares_keys_of_one_hash_slot() -> None:
    ops = Ops(Settings(prefix="tf"))
    job = NewJob("j1", "t", JobPriority.HIGH, "{}")
    calls = [
        ops.enqueue("orders", [job]),
        ops.fetch("orders", 5, "w"),
        ops.retry("orders", "j1", "1", 10, ("E", "m", "tb")),
        ops.requeue("orders", [("j1", "1")]),
        ops.extend("orders", [("j1", "1")]),
        ops.watch("orders", "j1"),
        ops.cancel("orders", "j1", "tf:control"),
        ops.revive("orders", ["j1"]),
    ]

    for op in calls:
        request = next(op)
        assert isinstance(request, ScriptCall)
        slots = {key_slot(k.encode()) for k in request.keys}
        assert slots == {key_slot(b"{orders}")}, request.name


# ------------------------------------------------------------------ spreading load


async def test_many_queues_spread_over_every_primary_and_one_worker_drains_them(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    ran: list[str] = []

    @app.task(name="spread.mark")
    async def mark(queue: str) -> None:
        ran.append(queue)

    queues = [f"q{i}" for i in range(12)]
    await app.aenqueue_many([mark.options(queue=q).s(q) for q in queues])
    await drain(app, queues)

    assert sorted(ran) == sorted(queues)
    assert len({node_of(app, q) for q in queues}) == 3


async def test_task_bodies_get_cluster_clients_that_route_each_key(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    keys = [f"{app.settings.prefix}:body:{i}" for i in range(6)]  # spread over the slots

    @app.task(name="body.incr_async")
    async def incr_async(key: str) -> None:
        await current_job().redis.incr(key)

    @app.task(name="body.incr_sync")
    def incr_sync(key: str) -> None:
        current_job().sync_redis.incr(key)

    akeys = [k + "a" for k in keys]
    skeys = [k + "s" for k in keys]
    await app.aenqueue_many([incr_async.s(k) for k in akeys] + [incr_sync.s(k) for k in skeys])
    await drain(app, ["default"])

    client = sync_client(app.settings)
    # Each body's key once: the async and the sync client each routed (and applied) every INCR.
    assert [client.get(k) for k in akeys] == ["1"] * 6
    assert [client.get(k) for k in skeys] == ["1"] * 6
    assert len({key_slot(k.encode()) for k in keys}) == 6


async def test_a_fresh_lent_cluster_client_applies_concurrent_first_commands_once(
    app_factory: AppFactory,
) -> None:
    # redis-py's asyncio cluster client initializes on first use; bodies sending their first
    # commands at once had some applied twice (4 of 240 INCRs here) until it initialized first.
    app = app_factory()
    values: list[str | None] = []
    client = sync_client(app.settings)
    for round_ in range(30):
        lent = TaskClients(app.settings, concurrency=10)
        keys = [f"{app.settings.prefix}:first:{round_}:{i}" for i in range(6)]
        cluster = lent.asyncio_client()
        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(cluster.incr, key)
        await lent.aclose()
        values += [client.get(k) for k in keys]

    assert values == ["1"] * 180


async def test_partitioned_queue_keeps_priority_order_within_each_partition(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    hot = Partitioned("hot", 3)
    ran: list[tuple[str, str]] = []

    @app.task(name="hot.work")
    async def work(user: str, label: str) -> None:
        ran.append((hot.by_key(user), label))

    users = [f"user-{i}" for i in range(9)]
    low = [work.options(priority="low").s(user=u, label="low") for u in users]
    high = [work.options(priority="high").s(user=u, label="high") for u in users]
    await app.aenqueue_many(hot.spread([*low, *high], key="user"))
    await drain(app, hot.queues, concurrency=1)

    assert len(ran) == 18
    for queue in hot.queues:
        labels = [label for q, label in ran if q == queue]
        assert labels == sorted(labels), f"{queue}: a LOW job ran before a HIGH one: {labels}"
    assert len({node_of(app, q) for q in hot.queues}) > 1


def test_round_robin_spread_fills_every_partition_evenly() -> None:
    hot = Partitioned("default", 4)
    app = Taskforge(Settings(redis_url="memory://"))

    calls = hot.spread([app.call("t.x") for _ in range(8)])

    queues = [c.options.queue for c in calls]
    assert sorted(queues) == sorted(hot.queues * 2)
    with pytest.raises(ConfigurationError):
        Partitioned("default", 0)


# ------------------------------------------------------------------ durability


def test_durable_enqueue_without_replicas_says_so_and_keeps_the_job(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(durable_enqueue=True, durable_timeout_s=0.05)
    app = Taskforge(settings)

    with pytest.raises(NotReplicatedError, match="0 of 1 replica"):
        app.submit([app.call("x.y")])

    broker = SyncBroker(settings)
    counts = broker.run(broker.ops.counts("default"))
    assert counts.ready_total == 1
    broker.close()
    app.client.close()


def test_durable_enqueue_on_a_cluster_waits_for_the_queues_own_replica(
    replicated_cluster: LocalCluster, prefix: str
) -> None:
    settings = Settings(
        redis_url=replicated_cluster.url, prefix=prefix, durable_enqueue=True, durable_timeout_s=0.3
    )
    app = Taskforge(settings)
    first = app.submit([app.call("d.x")])  # warm up: connected, script loaded
    # A queue away from the client's default node, where a keyless WAIT would otherwise go.
    default = app.client.broker.client.get_default_node().name  # type: ignore[union-attr]
    queue = next(q for q in (f"orders{i}" for i in range(50)) if node_of(app, q) != default)
    replica = _replica_of(replicated_cluster, node_of(app, queue))
    call = app.call("d.x")
    orders = [replace(call, options=replace(call.options, queue=queue))]
    app.submit(orders)
    replica.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        with pytest.raises(NotReplicatedError):
            app.submit(orders)
        with pytest.raises(NotReplicatedError):
            anyio.run(app.asubmit, orders)
    finally:
        replica.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]

    assert first[0].status() is JobStatus.QUEUED
    app.client.close()


def _replica_of(cluster: LocalCluster, primary: str) -> Any:
    """The RedisServer replicating the primary at ``host:port``."""
    port = int(primary.rsplit(":", 1)[1])
    for server in cluster.servers:
        info = server.client().info("replication")
        if info.get("role") == "slave" and int(info["master_port"]) == port:
            return server
    raise AssertionError(f"no replica of {primary}")


# ------------------------------------------------------------------ events, CLI, cache


async def test_events_of_queues_on_every_primary_reach_one_subscriber(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    queues = [f"ev{i}" for i in range(6)]

    @app.task(name="ev.x")
    async def x() -> None: ...

    listener = AsyncBroker(app.settings)
    subscribed = anyio.Event()
    seen: set[str] = set()

    async def listen() -> None:
        async for _, data in listener.subscribe(app.settings.events_channel, ready=subscribed):
            seen.add(json.loads(data)["queue"])
            if seen == set(queues):
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await subscribed.wait()
            await app.aenqueue_many([x.options(queue=q).s() for q in queues])
    await listener.aclose()

    assert seen == set(queues)
    assert len({node_of(app, q) for q in queues}) == 3


def test_cli_gathers_queues_jobs_and_dead_letters_from_every_primary(
    app_factory: AppFactory, redis_url: str, prefix: str
) -> None:
    app = app_factory()

    @app.task(name="cli.boom", max_retries=0)
    def boom() -> None:
        raise ValueError("no")

    queues = [f"c{i}" for i in range(6)]
    handles = app.enqueue_many([boom.options(queue=q).s() for q in queues])
    anyio.run(drain, app, queues)
    runner = CliRunner()
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix, "COLUMNS": "200"}

    def run(*args: str) -> Any:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    rows = run("queues", "--json")
    dead = run("dead", "list", "--json")
    job = run("job", handles[3].id, "--json")

    assert {r["queue"]: r["dead"] for r in rows} == dict.fromkeys(queues, 1)
    assert sorted(d["id"] for d in dead) == sorted(h.id for h in handles)
    assert (job["status"], job["queue"]) == ("dead", "c3")
    assert len({node_of(app, q) for q in queues}) == 3


async def test_cache_pattern_invalidation_gathers_keys_from_every_primary(
    redis_url: str, prefix: str
) -> None:
    cache = CacheService(Settings(redis_url=redis_url), namespace=f"{prefix}:cache")
    for i in range(30):
        await cache.set(f"workflow:{i}", {"n": i})

    removed = await cache.invalidate_pattern("workflow:*")

    assert removed == 30
    assert await cache.get("workflow:7") is None
    await cache.aclose()


async def test_health_and_startup_checks_read_every_primary(app_factory: AppFactory) -> None:
    # One primary evicting keys is enough to lose jobs: the checks must look at each of them.
    app = app_factory()
    client: Any = sync_client(app.settings)
    node = client.get_primaries()[1]
    bad = client.get_redis_connection(node)
    bad.config_set("maxmemory-policy", "allkeys-lru")
    try:
        report = await health_check(AsyncBroker(app.settings), queues=["default"])
    finally:
        bad.config_set("maxmemory-policy", "noeviction")

    assert report["connected"] is True
    assert len(report["nodes"]) == 3
    evicting = [w for w in report["warnings"] if "maxmemory-policy" in w]
    assert len(evicting) == 1
    assert evicting[0].startswith(f"{node.name}: ")
    assert report["status"] == "degraded"


def test_metrics_add_up_the_redis_figures_of_every_primary(app_factory: AppFactory) -> None:
    app = app_factory()
    client: Any = sync_client(app.settings)
    nodes = [client.get_redis_connection(n) for n in client.get_primaries()]
    for node, mib in zip(nodes, (100, 200, 0), strict=True):
        node.config_set("maxmemory", f"{mib}mb")
    exporter = MetricsExporter(app.settings, WorkerMetrics(), ["default"], port=0).start()
    try:
        text = exporter.scrape()
    finally:
        exporter.stop()
        for node in nodes:
            node.config_set("maxmemory", "0")

    line = next(x for x in text.splitlines() if x.startswith("taskforge_redis_maxmemory_bytes "))
    assert float(line.split()[1]) == 300 * 2**20


def test_admin_finds_lists_and_purges_queues_on_every_primary(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(name="cli.wait")
    def wait() -> None:
        """Never runs here."""

    queues = [f"p{i}" for i in range(6)]
    handles = app.enqueue_many([wait.options(queue=q).s() for q in queues for _ in range(3)])
    admin = Admin(app.settings)

    found = app.handle(handles[-1].id)
    status = found.status()
    listing = admin.listing("p4", limit=2)
    purged = admin.purge_queue("p5")
    depths = {d.queue: d.ready_total for d in admin.overview().depths}
    admin.close()

    assert (found.queue, status) == ("p5", JobStatus.QUEUED)
    assert [j.id for j in listing.sections["normal"]] == [h.id for h in handles[12:14]]
    assert purged.total == 3 and depths == {**dict.fromkeys(queues[:5], 3), "p5": 0}
    assert len({node_of(app, q) for q in queues}) == 3
