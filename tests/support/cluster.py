"""Real local scale-out deployments for tests and benchmarks, built from ``redis-server``s.

* :class:`LocalCluster`: N primaries with ``--cluster-enabled yes`` on free ports, joined by
  ``redis-cli --cluster create ... --cluster-yes``.
* :class:`LocalSentinel`: a primary, a replica and three ``redis-server --sentinel`` processes
  monitoring it as ``mymaster``; :meth:`LocalSentinel.kill_primary` crashes the primary and
  :meth:`LocalSentinel.wait_failover` waits until the Sentinels name the promoted replica.

Each server has its own temporary directory and is stopped by ``cleanup()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.cluster

from tests.support.redis_server import RedisServer, free_port

SERVICE = "mymaster"


def _poll(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class LocalCluster:
    """A Redis Cluster of ``primaries`` masters, each with ``replicas`` replicas, on 127.0.0.1."""

    primaries: int = 3
    replicas: int = 0
    servers: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    @property
    def nodes(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,...`` (the ``REDIS_CLUSTER_NODES`` form)."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def start(self, timeout_s: float = 20.0) -> LocalCluster:
        """Start the servers, create the cluster, and wait until every node says ``ok``.

        On failure every server started so far is stopped before the error propagates.
        """
        try:
            return self._start(timeout_s)
        except BaseException:
            self.cleanup()
            raise

    def _start(self, timeout_s: float) -> LocalCluster:
        for _ in range(self.primaries * (1 + self.replicas)):
            args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-port", str(free_port()), "--cluster-node-timeout", "2000"]
            args += ["--repl-diskless-sync-delay", "0"]
            self.servers.append(RedisServer(args=args).start())
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError("redis-cli is not installed (apt-get install -y redis-tools)")
        addrs = [f"127.0.0.1:{s.port}" for s in self.servers]
        replicas = ["--cluster-replicas", str(self.replicas)]
        subprocess.run(
            [binary, "--cluster", "create", *addrs, *replicas, "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
        )
        for server in self.servers:
            _poll(lambda s=server: _cluster_ok(s), timeout_s, f"cluster state ok on {server.port}")
        if self.replicas:
            _poll(self._replicas_ack, timeout_s, "every replica to sync and acknowledge writes")
        return self

    def _replicas_ack(self) -> bool:
        # A replica counts for WAIT once it acknowledged an offset: write a key each primary
        # owns (others answer MOVED) and WAIT on the same connection.
        for server in self.servers:
            client = server.client()
            if client.info("replication").get("role") != "master":
                continue
            for i in range(1000):
                pipe = client.pipeline(transaction=False)
                pipe.set(f"tf:replication-check:{i}", "1")
                pipe.execute_command("WAIT", self.replicas, 100)
                written, acked = pipe.execute(raise_on_error=False)
                if written is True:
                    break
            if int(acked) < self.replicas:
                return False
        return True

    def cleanup(self) -> None:
        """Stop every node and remove its directory."""
        for server in self.servers:
            server.cleanup()
        self.servers.clear()


def wait_writable(cluster: LocalCluster, dead_port: int, key: str, killed_at: float) -> float:
    """Seconds from the kill until the dead primary's slot takes writes again (its replica)."""
    survivor = next(s for s in cluster.servers if s.port != dead_port)
    while time.monotonic() - killed_at < 60:
        try:
            probe = redis.cluster.RedisCluster(
                host="127.0.0.1", port=survivor.port, socket_timeout=1, socket_connect_timeout=1
            )
            try:
                probe.set(key, "1")
            finally:
                probe.close()
            return time.monotonic() - killed_at
        except (redis.RedisError, IndexError):
            time.sleep(0.1)
    raise TimeoutError("no failover within 60 s")


def _cluster_ok(server: RedisServer) -> bool:
    info = server.client().execute_command("CLUSTER", "INFO")
    text = info if isinstance(info, str) else str(info)
    return "cluster_state:ok" in text


@dataclass
class LocalSentinel:
    """A primary, one replica and ``sentinels`` Sentinels (quorum 2) on 127.0.0.1."""

    sentinels: int = 3
    down_after_ms: int = 1000
    primary: RedisServer | None = None
    replica: RedisServer | None = None
    sentinel_servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tf-sentinel-")))

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,.../mymaster``."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self, timeout_s: float = 20.0) -> LocalSentinel:
        """Start primary, replica (in sync) and Sentinels (all seeing both servers).

        On failure every process started so far is stopped before the error propagates.
        """
        try:
            return self._start(timeout_s)
        except BaseException:
            self.cleanup()
            raise

    def _start(self, timeout_s: float) -> LocalSentinel:
        # No diskless-sync delay: the replica syncs at once instead of after 5 s.
        fast = ["--repl-diskless-sync-delay", "0"]
        self.primary = RedisServer(args=fast).start()
        self.replica = RedisServer(args=[*fast, "--replicaof", "127.0.0.1", str(self.primary.port)])
        self.replica.start()
        _poll(self._replica_acks, timeout_s, "the replica to sync and acknowledge writes")
        # Each Sentinel is told the replica and the others up front: discovering them (hello
        # messages, INFO every 10 s) would add seconds to every deployment.
        ids = [os.urandom(20).hex() for _ in range(self.sentinels)]
        self.sentinel_ports = [free_port() for _ in range(self.sentinels)]
        for i in range(self.sentinels):
            self._start_sentinel(i, ids)
        _poll(self._sentinels_ready, timeout_s, "the sentinels to see the replica and each other")
        return self

    def _replica_acks(self) -> bool:
        # A replica counts for WAIT only once it acknowledged an offset (about a second after
        # its sync); until then a durable enqueue would time out.
        assert self.primary is not None
        client = self.primary.client()
        client.set("tf:replication-check", "1")
        return int(client.execute_command("WAIT", 1, 100)) >= 1

    def _start_sentinel(self, i: int, ids: list[str]) -> None:
        assert self.primary is not None and self.replica is not None
        port = self.sentinel_ports[i]
        conf = self.dir / f"sentinel-{i}.conf"
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {self.dir}",
            f"sentinel myid {ids[i]}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SERVICE} 10000",
            f"sentinel parallel-syncs {SERVICE} 1",
            f"sentinel known-replica {SERVICE} 127.0.0.1 {self.replica.port}",
        ]
        for j, other in enumerate(self.sentinel_ports):
            if j != i:
                lines.append(f"sentinel known-sentinel {SERVICE} 127.0.0.1 {other} {ids[j]}")
        conf.write_text("\n".join(lines) + "\n")
        cmd = [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sentinel_servers.append(proc)

    def sentinel_client(self, i: int = 0) -> redis.Redis:
        """A plain client on Sentinel ``i``."""
        return redis.Redis(port=self.sentinel_ports[i], decode_responses=True)

    def _sentinels_ready(self) -> bool:
        for i in range(len(self.sentinel_ports)):
            master = self.sentinel_client(i).sentinel_master(SERVICE)
            if int(master["num-slaves"]) < 1 or int(master["num-other-sentinels"]) < 2:
                return False
        return True

    def primary_port(self, i: int = 0) -> int:
        """The primary's port as Sentinel ``i`` names it."""
        _, port = self.sentinel_client(i).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill_primary(self) -> int:
        """SIGKILL the current primary (a crash); returns its port."""
        assert self.primary is not None
        port = self.primary.port
        self.primary.kill()
        return port

    def wait_failover(self, old_port: int, timeout_s: float = 30.0) -> int:
        """Wait until every Sentinel names a new primary that accepts writes; returns its port."""
        _poll(
            lambda: all(self.primary_port(i) != old_port for i in range(len(self.sentinel_ports))),
            timeout_s,
            "the sentinels to promote the replica",
        )
        assert self.replica is not None
        replica = self.replica
        _poll(
            lambda: replica.client().info("replication").get("role") == "master",
            timeout_s,
            "the promoted replica to become a primary",
        )
        return self.primary_port()

    def pause_replica(self) -> None:
        """SIGSTOP the replica: it stops taking the primary's writes (a lagging replica)."""
        assert self.replica is not None and self.replica.proc is not None
        self.replica.proc.send_signal(signal.SIGSTOP)

    def resume_replica(self) -> None:
        """SIGCONT the replica."""
        assert self.replica is not None and self.replica.proc is not None
        self.replica.proc.send_signal(signal.SIGCONT)

    def rejoin_old_primary(self, timeout_s: float = 30.0) -> None:
        """Restart the crashed primary as a replica of the promoted one (as an operator would;
        the Sentinels would do it too, but only after their next INFO round, up to 10 s).

        Returns once the new primary has a replica in sync again.
        """
        assert self.primary is not None and self.replica is not None
        replica = self.replica
        old = self.primary
        old.args = [*old.args, "--replicaof", "127.0.0.1", str(replica.port)]
        old.start()
        _poll(
            lambda: int(replica.client().info("replication").get("connected_slaves", 0)) >= 1,
            timeout_s,
            "the old primary to rejoin as a replica",
        )

    def cleanup(self) -> None:
        """Stop sentinels and servers, remove their directories."""
        for proc in self.sentinel_servers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for server in (self.primary, self.replica):
            if server is not None:
                server.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
