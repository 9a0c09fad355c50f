"""Durable enqueue through a Redis Cluster failover: after the queue's primary is SIGKILLed and
its replica promoted, re-sends reach the new primary (and the job is written once)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import anyio
import pytest

from taskforge import BrokerError, JobStatus, Settings, Taskforge
from taskforge.protocol.keys import QueueKeys
from tests.support.cluster import LocalCluster, wait_writable


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    """A fresh 3-primary cluster with a replica each (this test kills one of its primaries)."""
    try:
        deployment = LocalCluster(primaries=3, replicas=1).start()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"cannot start a local Redis Cluster: {exc}")
    yield deployment
    deployment.cleanup()


def resend_until_acknowledged(send: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return send()
        except BrokerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_durable_enqueue_reaches_the_promoted_replica_after_a_failover(
    cluster: LocalCluster, prefix: str
) -> None:
    settings = Settings(
        redis_url=cluster.url, prefix=prefix, durable_enqueue=True, durable_timeout_s=1.0,
        socket_timeout_s=1.0, socket_connect_timeout_s=1.0,
    )  # fmt: skip
    app = Taskforge(settings)
    app.submit([app.call("f.x", 0)])  # connected, slot map read, script loaded
    client: Any = app.client.broker.client
    wake = QueueKeys(prefix, "default").wake
    victim = next(s for s in cluster.servers if s.port == client.get_node_from_key(wake).port)
    call = app.call("f.x", 1)
    calls = [replace(call, options=replace(call.options, job_id="after-failover"))]

    def fail_over() -> None:
        wait_writable(cluster, victim.port, wake + ":probe", killed_at)
        victim.start()  # rejoins as the new primary's replica: WAIT has a replica again

    killed_at = time.monotonic()
    victim.kill()
    operator = threading.Thread(target=fail_over, daemon=True)
    operator.start()
    # The producer re-sends from the moment of the crash, through the promotion.
    handles = resend_until_acknowledged(lambda: app.submit(calls), timeout_s=40)
    operator.join(60)
    again = resend_until_acknowledged(lambda: anyio.run(app.asubmit, calls), timeout_s=40)

    assert handles[0].status() is JobStatus.QUEUED
    assert again[0].id == "after-failover" and again[0].created is False
    app.client.close()
