"""Settings: the seed's REDIS_* environment names, overrides, refused values, masked URLs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from taskforge import ConfigurationError, Settings, Taskforge
from taskforge.driver.connection import sync_client
from tests.support.redis_server import RedisServer

SEED_ENV = {
    "REDIS_URL": "redis://cache.internal:6380/2",
    "REDIS_PASSWORD": "your-secure-password",
    "REDIS_MAX_CONNECTIONS": "7",
    "REDIS_SOCKET_TIMEOUT": "2.5",
    "REDIS_SOCKET_CONNECT_TIMEOUT": "1.5",
    "REDIS_RETRY_ON_TIMEOUT": "false",
    "REDIS_SSL": "true",
    "REDIS_SSL_CA_CERTS": "/path/to/ca-cert.pem",
    "REDIS_SSL_CERTFILE": "/path/to/client-cert.pem",
    "REDIS_SSL_KEYFILE": "/path/to/client-key.pem",
}


def test_every_seed_variable_is_read() -> None:
    settings = Settings.from_env(SEED_ENV)

    assert settings.redis_url == "redis://cache.internal:6380/2"
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "your-secure-password"
    assert settings.max_connections == 7
    assert settings.socket_timeout_s == 2.5
    assert settings.socket_connect_timeout_s == 1.5
    assert settings.retry_on_timeout is False
    assert settings.ssl is True
    assert settings.ssl_ca_certs == "/path/to/ca-cert.pem"
    assert settings.ssl_certfile == "/path/to/client-cert.pem"
    assert settings.ssl_keyfile == "/path/to/client-key.pem"


def test_taskforge_variables_are_read() -> None:
    env = {
        "TASKFORGE_PREFIX": "billing",
        "TASKFORGE_RESULT_TTL": "60",
        "TASKFORGE_MAX_PAYLOAD_BYTES": "4096",
        "TASKFORGE_LEASE": "1.5",
    }

    settings = Settings.from_env(env)

    assert settings.prefix == "billing"
    assert settings.result_ttl_s == 60
    assert settings.max_payload_bytes == 4096
    assert settings.lease_s == 1.5


def test_defaults_match_the_seed_when_nothing_is_set() -> None:
    settings = Settings.from_env({})

    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.redis_password is None
    assert settings.max_connections == 50
    assert settings.socket_timeout_s == 5.0
    assert settings.socket_connect_timeout_s == 5.0
    assert settings.retry_on_timeout is True
    assert settings.ssl is False
    assert settings.prefix == "taskforge"
    assert settings.events_channel == "job:updates"


def test_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6379/3")
    monkeypatch.setenv("REDIS_MAX_CONNECTIONS", "11")

    settings = Settings.from_env()

    assert settings.redis_url == "redis://from-env:6379/3"
    assert settings.max_connections == 11


def test_overrides_win_over_the_environment_and_none_keeps_it() -> None:
    settings = Settings.from_env(
        SEED_ENV, redis_url="redis://override:6379/0", max_connections=3, prefix=None
    )

    assert settings.redis_url == "redis://override:6379/0"
    assert settings.max_connections == 3
    assert settings.prefix == "taskforge"
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "your-secure-password"


def test_app_configure_replaces_settings() -> None:
    app = Taskforge(Settings.from_env({}))

    app.configure(redis_url="memory://configured", lease_s=2.0)

    assert app.settings.redis_url == "memory://configured"
    assert app.settings.lease_s == 2.0


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("REDIS_MAX_CONNECTIONS", "many", "max_connections"),
        ("REDIS_MAX_CONNECTIONS", "0", "max_connections"),
        ("REDIS_SOCKET_TIMEOUT", "-1", "socket_timeout_s"),
        ("REDIS_SOCKET_TIMEOUT", "soon", "socket_timeout_s"),
        ("REDIS_SOCKET_CONNECT_TIMEOUT", "0", "socket_connect_timeout_s"),
        ("REDIS_RETRY_ON_TIMEOUT", "maybe", "retry_on_timeout"),
        ("REDIS_SSL", "sometimes", "ssl"),
        ("TASKFORGE_PREFIX", "a{b}", "prefix"),
        ("TASKFORGE_RESULT_TTL", "0", "result_ttl_s"),
        ("TASKFORGE_MAX_PAYLOAD_BYTES", "10", "max_payload_bytes"),
        ("TASKFORGE_LEASE", "-5", "lease_s"),
    ],
)
def test_bad_environment_value_is_a_configuration_error(var: str, value: str, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({var: value})

    # The message must point at what to fix: the variable, or the setting it feeds.
    message = str(caught.value)
    assert var in message or field in message, message


def test_bad_override_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({}, max_connections=-3)


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})

    with pytest.raises(ValueError):
        settings.redis_url = "redis://elsewhere"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:secret@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
        ("rediss://app:s3cr%40t@redis.example:6380/1", "rediss://app:***@redis.example:6380/1"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("memory://", "memory://"),
    ],
)
def test_masked_url_hides_only_the_password(url: str, masked: str) -> None:
    settings = Settings.from_env({}, redis_url=url)

    assert settings.masked_url() == masked


def test_memory_url_is_flagged_as_embedded() -> None:
    assert Settings.from_env({"REDIS_URL": "memory://"}).is_memory
    assert not Settings.from_env({"REDIS_URL": "redis://localhost"}).is_memory


def pool_of(settings: Settings) -> redis.ConnectionPool:
    """The connection pool of the client built for ``settings`` (a single-node URL)."""
    client = sync_client(settings)
    assert isinstance(client, redis.Redis)
    return client.connection_pool


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(password="pw-from-env").start()
    yield server
    server.cleanup()


def test_redis_password_is_used_to_authenticate(password_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{password_server.port}/0"
    with_password = Settings.from_env({"REDIS_URL": url, "REDIS_PASSWORD": "pw-from-env"})
    without = Settings.from_env({"REDIS_URL": url}, connect_retries=0)

    assert sync_client(with_password).ping()
    with pytest.raises(redis.AuthenticationError):
        sync_client(without).set("k", "v")


def test_redis_ssl_switches_the_connection_to_tls() -> None:
    plain = Settings.from_env({"REDIS_URL": "redis://h:6379/0"})
    tls = Settings.from_env({"REDIS_URL": "redis://h:6379/0", "REDIS_SSL": "true"})

    assert pool_of(plain).connection_class is redis.Connection
    assert pool_of(tls).connection_class is redis.SSLConnection


def test_pool_size_and_timeouts_reach_the_client() -> None:
    env = {
        "REDIS_URL": "redis://h:6379/0",
        "REDIS_MAX_CONNECTIONS": "9",
        "REDIS_SOCKET_TIMEOUT": "2.5",
        "REDIS_SOCKET_CONNECT_TIMEOUT": "1.5",
    }

    pool = pool_of(Settings.from_env(env))

    assert pool.max_connections == 9
    assert pool.connection_kwargs["socket_timeout"] == 2.5
    assert pool.connection_kwargs["socket_connect_timeout"] == 1.5
