"""One command's way to Redis: its settings, a broker or the admin API, with errors turned
into one line and an exit code (1: Redis or an unknown job; 2: bad input or configuration)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from taskforge.admin import Admin
from taskforge.cli.output import fail
from taskforge.errors import BrokerError, ConfigurationError, JobNotFoundError
from taskforge.protocol.brokers import SyncBroker
from taskforge.settings import Settings


def settings_for(redis_url: str | None) -> Settings:
    """Settings from the environment, ``--redis-url`` first; a bad setting exits 2."""
    try:
        return Settings.from_env(redis_url=redis_url)
    except ConfigurationError as exc:
        raise fail(str(exc), 2) from None


def bad_url(settings: Settings, exc: ValueError) -> typer.Exit:
    """The exit (code 2) for a Redis URL refused before connecting, its password masked."""
    if isinstance(exc, ConfigurationError):  # ours: it names the masked URL already
        return fail(settings.scrub(str(exc)), 2)
    return fail(f"cannot use Redis URL {settings.masked_url()}: {settings.scrub(str(exc))}", 2)


@contextmanager
def connect(redis_url: str | None) -> Iterator[SyncBroker]:
    """A blocking broker for one command; Redis errors become one line and exit code 1."""
    settings = settings_for(redis_url)
    try:
        broker = SyncBroker(settings)
    except ValueError as exc:  # redis-py refuses the URL before connecting
        raise bad_url(settings, exc) from None
    try:
        yield broker
    except BrokerError as exc:  # its message carries the URL with the password masked
        raise fail(str(exc)) from None
    finally:
        broker.close()


@contextmanager
def open_admin(redis_url: str | None) -> Iterator[Admin]:
    """The operator API for one command; Redis errors and unknown jobs become one line and exit
    code 1, bad input (a queue name, a selection) one line and exit code 2."""
    with connect(redis_url) as broker:
        try:
            yield Admin(broker.settings, broker=broker)
        except JobNotFoundError as exc:
            raise fail(str(exc)) from None
        except ConfigurationError as exc:
            raise fail(str(exc), 2) from None


__all__ = ["bad_url", "connect", "open_admin", "settings_for"]
