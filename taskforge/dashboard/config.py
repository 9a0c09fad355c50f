"""The dashboard's settings: who may see it, whether it may act, where it may listen."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from taskforge.errors import ConfigurationError

#: Environment variables the dashboard reads (flags of ``taskforge dashboard`` override them).
TOKEN_ENV = "TASKFORGE_DASHBOARD_TOKEN"
BASIC_AUTH_ENV = "TASKFORGE_DASHBOARD_BASIC_AUTH"
READ_ONLY_ENV = "TASKFORGE_DASHBOARD_READ_ONLY"

#: Bytes of a job's envelope shown on its page; the rest is cut, and says so.
ENVELOPE_CAP_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """How the dashboard authenticates and whether it may act.

    ``token`` is accepted as ``Authorization: Bearer <token>`` or once as ``?token=`` (which sets
    a cookie); ``basic_auth`` is ``"user:password"`` for HTTP basic auth. With neither, anyone
    who can reach the port can use the dashboard, so :meth:`check_bind` allows that on a
    loopback address only. ``read_only`` hides every action and refuses every POST.
    """

    token: str | None = None
    basic_auth: str | None = None
    read_only: bool = False
    envelope_cap_bytes: int = ENVELOPE_CAP_BYTES

    def __post_init__(self) -> None:
        if self.basic_auth is not None and ":" not in self.basic_auth:
            raise ConfigurationError(
                f"{BASIC_AUTH_ENV} / --basic-auth must be 'user:password', got no ':'"
            )
        if self.token is not None and len(self.token) < 16:
            raise ConfigurationError(
                "the dashboard token must be at least 16 characters; make one with"
                " `python -c 'import secrets; print(secrets.token_urlsafe(24))'`"
            )

    @classmethod
    def from_env(
        cls,
        *,
        token: str | None = None,
        basic_auth: str | None = None,
        read_only: bool | None = None,
    ) -> DashboardConfig:
        """Arguments given win; the rest come from the ``TASKFORGE_DASHBOARD_*`` variables."""
        env_ro = os.environ.get(READ_ONLY_ENV, "").lower() in ("1", "true", "yes")
        return cls(
            token=token or os.environ.get(TOKEN_ENV) or None,
            basic_auth=basic_auth or os.environ.get(BASIC_AUTH_ENV) or None,
            read_only=env_ro if read_only is None else read_only,
        )

    @property
    def has_auth(self) -> bool:
        """True when a token or basic auth is configured."""
        return bool(self.token or self.basic_auth)

    def check_bind(self, host: str) -> None:
        """Refuse to listen beyond this machine with no authentication configured.

        Raises:
            ConfigurationError: ``host`` is not a loopback address and no auth is set.
        """
        if self.has_auth or is_loopback(host):
            return
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host!r} without authentication: anyone who"
            f" reaches it could purge queues. Set {TOKEN_ENV} (or --token) or {BASIC_AUTH_ENV}"
            " (or --basic-auth user:password), or bind --host 127.0.0.1"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


__all__ = [
    "BASIC_AUTH_ENV",
    "ENVELOPE_CAP_BYTES",
    "READ_ONLY_ENV",
    "TOKEN_ENV",
    "DashboardConfig",
    "is_loopback",
]
