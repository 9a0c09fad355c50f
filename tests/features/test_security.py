"""Security: JSON-only workers, auth (password, ACL user), TLS, HMAC signing, prefix isolation.

Auth and TLS run against real ``redis-server`` processes started here (``--requirepass``, an ACL
user made with ``ACL SETUSER``, a TLS port with a CA and certificate the test makes itself).
"""

from __future__ import annotations

import base64
import os
import pickle
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from taskforge import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    JobStatus,
    Settings,
    Taskforge,
    Worker,
)
from taskforge.job import JobPriority, JobRecord
from taskforge.protocol.brokers import SyncBroker
from taskforge.protocol.records import NewJob
from taskforge.signing import SignatureError, sign_fields, verify_fields
from tests.support.redis_server import RedisServer, free_port

KEY = "k3y-for-tests"


def burst(app: Taskforge, settings: Settings | None = None) -> None:
    """Run one worker of ``app`` until its queue is drained."""
    worker = Worker(settings or app.settings, app.registry, burst=True, burst_horizon_s=0)
    anyio.run(worker.run)


def put_raw(
    settings: Settings, job_id: str, fields: dict[str, str], task: str = "sec.echo"
) -> None:
    """Enqueue a job whose record fields (``a``, ``k``, ``o``, ``g``) are exactly ``fields``
    (what an intruder could write)."""
    broker = SyncBroker(settings)
    flat = tuple(x for pair in fields.items() for x in pair)
    try:
        broker.run(broker.ops.enqueue("default", [NewJob(job_id, task, JobPriority.NORMAL, flat)]))
    finally:
        broker.close()


def record(app: Taskforge, job_id: str) -> JobRecord:
    return app.client.record("default", job_id)


def echo_app(make: Callable[..., Taskforge], ran: list[Any], **overrides: Any) -> Taskforge:
    app = make(**overrides)

    @app.task(name="sec.echo", max_retries=0)
    def echo(x: Any = None) -> str:
        ran.append(x)
        return repr(x)

    return app


# --------------------------------------------------------------------------- serializers


class _MakesDir:
    """Unpickling this creates a directory: proof of whether a worker ever unpickled it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def test_json_worker_refuses_a_pickle_job_without_unpickling_it(
    app_factory: Callable[..., Taskforge], tmp_path: Path
) -> None:
    ran: list[Any] = []
    producer = echo_app(app_factory, [], serializer="pickle")
    worker_app = echo_app(app_factory, ran)
    marker = tmp_path / "unpickled"

    handle = producer.registry.get("sec.echo").delay(_MakesDir(marker))
    burst(worker_app)

    rec = record(worker_app, handle.id)
    assert rec.status == JobStatus.DEAD
    assert rec.error_type == "SerializerRefusedError"
    assert rec.error is not None and "refused: job uses the pickle serializer" in rec.error
    assert not marker.exists()
    assert ran == []


def test_raw_pickle_bytes_as_arguments_are_buried_as_poison(
    app_factory: Callable[..., Taskforge], tmp_path: Path
) -> None:
    ran: list[Any] = []
    app = echo_app(app_factory, ran)
    marker = tmp_path / "unpickled"
    raw = pickle.dumps(_MakesDir(marker)).decode("latin-1")

    put_raw(app.settings, "raw-pickle", {"a": raw})
    burst(app)

    rec = record(app, "raw-pickle")
    assert rec.status == JobStatus.DEAD
    assert rec.error_type == "PoisonJob"
    assert not marker.exists()
    assert ran == []


def test_pickle_runs_only_where_both_sides_opted_in(
    app_factory: Callable[..., Taskforge],
) -> None:
    ran: list[Any] = []
    app = echo_app(app_factory, ran, serializer="pickle")

    handle = app.registry.get("sec.echo").delay({1, 2, 3})  # a set: JSON cannot carry it
    burst(app)

    assert record(app, handle.id).status == JobStatus.SUCCEEDED
    assert ran == [{1, 2, 3}]


def test_pickle_envelope_with_damaged_payload_is_poison(
    app_factory: Callable[..., Taskforge],
) -> None:
    app = echo_app(app_factory, [], serializer="pickle")
    fields = {"a": '["!!notbase64"]', "o": '{"serializer":"pickle"}'}

    put_raw(app.settings, "bad-pickle", fields)
    burst(app)

    rec = record(app, "bad-pickle")
    assert rec.status == JobStatus.DEAD
    assert rec.error_type == "PoisonJob"


# --------------------------------------------------------------------------- HMAC signing


def test_signed_jobs_run_on_a_worker_with_the_key(app_factory: Callable[..., Taskforge]) -> None:
    ran: list[Any] = []
    app = echo_app(app_factory, ran, signing_key=KEY)

    handle = app.registry.get("sec.echo").delay("hello")
    burst(app)

    assert record(app, handle.id).status == JobStatus.SUCCEEDED
    assert ran == ["hello"]


def test_worker_with_a_key_dead_letters_unsigned_jobs(
    app_factory: Callable[..., Taskforge],
) -> None:
    ran: list[Any] = []
    producer = echo_app(app_factory, [])
    worker_app = echo_app(app_factory, ran, signing_key=KEY)

    handle = producer.registry.get("sec.echo").delay("sneaky")
    burst(worker_app)

    rec = record(worker_app, handle.id)
    assert rec.status == JobStatus.DEAD
    assert rec.error_type == "SignatureError"
    assert rec.error is not None and rec.error.startswith("refused: unsigned job")
    assert ran == []


@pytest.mark.parametrize("forgery", ["tampered-args", "other-key"])
def test_worker_with_a_key_dead_letters_forged_jobs(
    app_factory: Callable[..., Taskforge], forgery: str
) -> None:
    ran: list[Any] = []
    app = echo_app(app_factory, ran, signing_key=KEY)
    if forgery == "tampered-args":  # signed for '["ls"]', stored with other arguments
        sig = sign_fields(KEY.encode(), ("forged", "sec.echo", "default", '["ls"]', "", ""))
    else:
        texts = ("forged", "sec.echo", "default", '["rm -rf /"]', "", "")
        sig = sign_fields(b"someone else's key", texts)

    put_raw(app.settings, "forged", {"a": '["rm -rf /"]', "g": sig})
    burst(app)

    rec = record(app, "forged")
    assert rec.status == JobStatus.DEAD
    assert rec.error_type == "SignatureError"
    assert rec.error is not None and "forged" in rec.error
    assert ran == []


def test_signing_key_is_never_shown_in_settings_repr() -> None:
    settings = Settings(signing_key=KEY)

    assert KEY not in repr(settings)
    assert KEY not in str(settings.model_dump())


def test_security_settings_come_from_the_environment() -> None:
    env = {"TASKFORGE_SIGNING_KEY": KEY, "TASKFORGE_SERIALIZER": "pickle"}
    env["TASKFORGE_MAX_DELIVERIES"] = "7"

    settings = Settings.from_env(env)

    assert settings.signing_key is not None
    assert settings.signing_key.get_secret_value() == KEY
    assert settings.serializer == "pickle"
    assert settings.max_deliveries == 7


def test_unknown_serializer_is_refused_at_configuration() -> None:
    with pytest.raises(ConfigurationError, match="TASKFORGE_SERIALIZER='yaml'"):
        Settings.from_env({"TASKFORGE_SERIALIZER": "yaml"})


# --------------------------------------------------------------------------- prefix isolation


def test_two_apps_with_different_prefixes_share_one_redis_without_crosstalk(
    app_factory: Callable[..., Taskforge], prefix: str
) -> None:
    ran: dict[str, list[Any]] = {"a": [], "b": []}
    app_a = echo_app(app_factory, ran["a"], prefix=f"{prefix}-a")
    app_b = echo_app(app_factory, ran["b"], prefix=f"{prefix}-b")

    ha = [app_a.registry.get("sec.echo").delay(f"a{i}") for i in range(3)]
    hb = [app_b.registry.get("sec.echo").delay(f"b{i}") for i in range(2)]
    burst(app_a)

    assert sorted(ran["a"]) == ["a0", "a1", "a2"]
    assert ran["b"] == []
    assert app_b.client.broker.run(app_b.client.broker.ops.counts("default")).ready_total == 2
    burst(app_b)
    assert sorted(ran["b"]) == ["b0", "b1"]
    assert all(record(app_a, h.id).status == JobStatus.SUCCEEDED for h in ha)
    assert all(record(app_b, h.id).status == JobStatus.SUCCEEDED for h in hb)


# --------------------------------------------------------------------------- auth


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server installed")
    server = RedisServer(password="s3cret-pw").start()
    yield server
    server.cleanup()


def roundtrip(settings: Settings) -> list[Any]:
    """Enqueue one job and run it with a burst worker over ``settings``; return what ran."""
    ran: list[Any] = []
    app = Taskforge(settings)

    @app.task(name="sec.echo", max_retries=0)
    def echo(x: Any = None) -> None:
        ran.append(x)

    try:
        handle = echo.delay("over the wire")
        burst(app)
        assert record(app, handle.id).status == JobStatus.SUCCEEDED
    finally:
        app.client.close()
    return ran


def test_password_in_url_or_redis_password_authenticates(password_server: RedisServer) -> None:
    url = password_server.url
    plain = f"redis://127.0.0.1:{password_server.port}/0"

    assert roundtrip(Settings(redis_url=url, prefix="pw1")) == ["over the wire"]
    assert roundtrip(Settings(redis_url=plain, redis_password="s3cret-pw", prefix="pw2")) == [
        "over the wire"
    ]


def test_wrong_password_fails_clearly_without_showing_it(password_server: RedisServer) -> None:
    url = f"redis://:wrong-pw@127.0.0.1:{password_server.port}/0"
    app = Taskforge(Settings(redis_url=url, prefix="pw3", connect_retries=0))

    @app.task(name="sec.echo")
    def echo() -> None: ...

    with pytest.raises(BrokerError) as caught:
        echo.delay()
    app.client.close()

    assert "wrong-pw" not in str(caught.value)
    assert "***" in str(caught.value)
    assert "WRONGPASS" in str(caught.value) or "invalid" in str(caught.value).lower()


def test_acl_user_limited_to_its_prefix_works_and_is_refused_elsewhere(
    password_server: RedisServer,
) -> None:
    admin = password_server.client()
    admin.execute_command(
        "ACL", "SETUSER", "tfapp", "on", ">app-pw", "resetkeys", "~tfacl:*", "&*", "+@all"
    )
    admin.close()
    url = f"redis://tfapp:app-pw@127.0.0.1:{password_server.port}/0"

    assert roundtrip(Settings(redis_url=url, prefix="tfacl")) == ["over the wire"]
    app = Taskforge(Settings(redis_url=url, prefix="other", connect_retries=0))

    @app.task(name="sec.echo")
    def echo() -> None: ...

    with pytest.raises(BrokerError, match=r"NOPERM|permission"):
        echo.delay()
    app.client.close()


# --------------------------------------------------------------------------- TLS


def _make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1 (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS test skipped: no openssl CLI to make a test CA")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "1", "-subj", "/CN=taskforge test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext")  # fmt: skip
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server installed")
    ca, cert, key = _make_certs(tmp_path_factory.mktemp("tls"))
    tls_port = free_port()
    args = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    args += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    server = RedisServer(args=args)
    try:
        server.start(timeout_s=5)
    except (RuntimeError, OSError) as exc:
        server.cleanup()
        reason = f"TLS test skipped: this redis-server has no TLS support ({exc})"
        print(reason)
        pytest.skip(reason)
    yield tls_port, ca
    server.cleanup()


def test_rediss_with_the_test_ca_verifies_and_works(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    settings = Settings(redis_url=f"rediss://localhost:{port}/0", ssl_ca_certs=str(ca))

    assert roundtrip(settings.model_copy(update={"prefix": "tls1"})) == ["over the wire"]


def test_rediss_refuses_a_server_whose_certificate_it_cannot_verify(
    tls_server: tuple[int, Path],
) -> None:
    port, _ = tls_server
    settings = Settings(redis_url=f"rediss://localhost:{port}/0", prefix="tls2", connect_retries=0)
    app = Taskforge(settings)

    @app.task(name="sec.echo")
    def echo() -> None: ...

    with pytest.raises(BrokerConnectionError, match=r"(?i)certificate"):
        echo.delay()
    app.client.close()


def test_a_signature_covers_each_signed_field_of_the_record() -> None:
    texts = ("x", "t", "default", "[1]", '{"a":1}', '{"max_retries":0}')
    sig = sign_fields(KEY.encode(), texts)

    assert len(base64.b16decode(sig.upper())) == 32  # 32 bytes of hex: fits a listpack value
    verify_fields(KEY.encode(), texts, sig)
    for i in range(len(texts)):
        changed = (*texts[:i], texts[i] + " ", *texts[i + 1 :])
        with pytest.raises(SignatureError, match="forged"):
            verify_fields(KEY.encode(), changed, sig)
    # Moving text from one field to the next changes the signed text too.
    with pytest.raises(SignatureError):
        verify_fields(KEY.encode(), ("x", "t", "default", "[1]{", '"a":1}', texts[5]), sig)
