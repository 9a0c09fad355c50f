"""Configuration: the seed's ``REDIS_*`` environment variables, overridable in code and CLI."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from taskforge.errors import ConfigurationError

MEMORY_URL = "memory://"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Environment variable -> Settings field. The REDIS_* names are the seed's own.
_ENV: dict[str, str] = {
    "REDIS_URL": "redis_url",
    "REDIS_PASSWORD": "redis_password",
    "REDIS_MAX_CONNECTIONS": "max_connections",
    "REDIS_SOCKET_TIMEOUT": "socket_timeout_s",
    "REDIS_SOCKET_CONNECT_TIMEOUT": "socket_connect_timeout_s",
    "REDIS_RETRY_ON_TIMEOUT": "retry_on_timeout",
    "REDIS_SSL": "ssl",
    "REDIS_SSL_CA_CERTS": "ssl_ca_certs",
    "REDIS_SSL_CERTFILE": "ssl_certfile",
    "REDIS_SSL_KEYFILE": "ssl_keyfile",
    "TASKFORGE_PREFIX": "prefix",
    "TASKFORGE_SIGNING_KEY": "signing_key",
    "TASKFORGE_SERIALIZER": "serializer",
    "TASKFORGE_MAX_DELIVERIES": "max_deliveries",
    "TASKFORGE_EVENTS_CHANNEL": "events_channel",
    "TASKFORGE_RESULT_TTL": "result_ttl_s",
    "TASKFORGE_MAX_PAYLOAD_BYTES": "max_payload_bytes",
    "TASKFORGE_LEASE": "lease_s",
    "REDIS_CLUSTER_NODES": "cluster_nodes",
    "REDIS_SENTINEL_PASSWORD": "sentinel_password",
    "TASKFORGE_DURABLE": "durable_enqueue",
    "TASKFORGE_DURABLE_TIMEOUT": "durable_timeout_s",
}


class Settings(BaseModel):
    """Everything taskforge needs to reach Redis and shape its keys.

    Build it with :meth:`from_env` (reads the seed's ``REDIS_*`` names) and override fields with
    keyword arguments, e.g. ``Settings.from_env(redis_url="redis://cache:6379/1")``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str = "redis://localhost:6379/0"
    redis_password: SecretStr | None = None
    max_connections: int = Field(default=50, ge=1)
    socket_timeout_s: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    socket_connect_timeout_s: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    retry_on_timeout: bool = True
    connect_retries: int = Field(
        default=3, ge=0, description="reconnect attempts, exponential backoff"
    )
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    prefix: str = Field(default="taskforge", min_length=1)
    events_channel: str = "job:updates"
    result_ttl_s: int = Field(
        default=24 * 3600, ge=1, description="how long final job records live"
    )
    max_payload_bytes: int = Field(default=1024 * 1024, ge=1024)
    signing_key: SecretStr | None = Field(
        default=None,
        description="HMAC key: envelopes are signed; workers bury unsigned or forged ones",
    )
    serializer: Literal["json", "pickle"] = Field(
        default="json",
        description="'pickle' (trusted networks only): producers send, workers run pickle",
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="in-flight lease; renewed every lease_s / 3",
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="deliveries lost to dying workers before a job is buried as poison",
    )

    cluster_nodes: str | None = Field(
        default=None,
        description="'host:port,host:port' seeds of a Redis Cluster; set, it overrides the URL's"
        " hosts (auth and TLS still come from the URL and the REDIS_* settings)",
    )
    sentinel_password: SecretStr | None = Field(
        default=None, description="password of the Sentinels themselves (redis+sentinel://)"
    )
    durable_enqueue: bool = Field(
        default=False,
        description="after each enqueue, WAIT until a replica has the job (or raise)",
    )
    durable_timeout_s: float = Field(
        default=1.0, gt=0, allow_inf_nan=False, description="longest WAIT of a durable enqueue"
    )

    @field_validator("prefix")
    @classmethod
    def _no_braces(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("prefix must not contain '{' or '}' (they pick the Redis hash slot)")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment (``REDIS_URL``, ``REDIS_PASSWORD``, ...) and overrides.

        Raises:
            ConfigurationError: a variable or override has a value that cannot work.
        """
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var, field in _ENV.items():
            if var in source:
                values[field] = _parse_env(var, source[var])
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            named = set(values) - set(overrides)
            raise ConfigurationError(_one_line(exc, named)) from None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URL may hold a password (``redis://:pw@host``, ``?password=``): repr() and str()
        # show it masked, like the SecretStr fields.
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "redis_url" else value

    @property
    def is_memory(self) -> bool:
        """True for the embedded in-process server (``memory://``)."""
        return self.redis_url.startswith(MEMORY_URL)

    def masked_url(self) -> str:
        """The Redis URL with any password replaced by ``***``, safe to log."""
        return mask_url(self.redis_url)

    def scrub(self, text: str) -> str:
        """``text`` with every secret these settings hold replaced by ``***``: for error
        messages that quote what a library said about the URL."""
        secrets = _url_secrets(self.redis_url)
        secrets += [
            s.get_secret_value() for s in (self.redis_password, self.sentinel_password) if s
        ]
        # Longest first, so a secret that contains another is replaced whole.
        for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
            text = text.replace(secret, "***")
        return mask_url(text)


_FIELD_VAR = {field: var for var, field in _ENV.items()}


def _one_line(exc: ValidationError, from_env: set[str]) -> str:
    """A pydantic error as one line naming each variable (or field), its masked value and
    what is wrong, instead of pydantic's multi-line dump."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "settings"
        name = _FIELD_VAR[field] if field in from_env and field in _FIELD_VAR else field
        shown = "***" if "password" in field or field == "signing_key" else err.get("input")
        if isinstance(shown, str):
            shown = mask_url(shown)
        parts.append(f"{name}={shown!r}: {err['msg'].lower()}")
    return "invalid taskforge settings: " + "; ".join(parts)


def _parse_env(var: str, raw: str) -> Any:
    if var in {"REDIS_RETRY_ON_TIMEOUT", "REDIS_SSL", "TASKFORGE_DURABLE"}:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(f"{var}={raw!r}: expected true/false")
    if var == "REDIS_URL" and not raw.strip():
        raise ConfigurationError(
            "REDIS_URL is set but empty: set it to a URL such as redis://localhost:6379/0, or"
            " unset it for that default"
        )
    return raw if raw != "" or var == "REDIS_PASSWORD" else None


# ``user:password@`` after an optional ``scheme://``; the password runs to the last ``@`` before
# the path, so one holding an unescaped ``@`` is still hidden whole.
_USERINFO = re.compile(r"(^|\s|//)([^\s:/?#@]*):([^\s/?#]*)@")
# A query parameter that carries a secret (redis-py reads ``?password=`` as the password).
_SECRET_QUERY = re.compile(r"([?&;][^=&#\s]*(?:pass|secret|token|auth)[^=&#\s]*=)[^&#\s]*", re.I)


def mask_url(url: str) -> str:
    """Hide the passwords in a URL: ``redis://user:***@host``, ``?password=***``.

    Works on text, not on a parsed URL, so it never raises: a URL without a scheme or with a
    malformed host (``redis://:pw@[::1/0``) is masked too.
    """
    masked = _SECRET_QUERY.sub(r"\1***", url)
    return _USERINFO.sub(r"\1\2:***@", masked)


def _url_secrets(url: str) -> list[str]:
    found = [m.group(3) for m in _USERINFO.finditer(url)]
    return found + [m.group(0).split("=", 1)[1] for m in _SECRET_QUERY.finditer(url)]


__all__ = ["MEMORY_URL", "Settings", "mask_url"]
