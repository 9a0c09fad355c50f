"""Which failures a task retries: ``retry_on``, ``dont_retry_on``, ``Retry`` and ``Fail``.

The decision, in order: ``Fail`` never retries; a deliberate ``Retry`` always does (while the
budget lasts); an exception in ``dont_retry_on`` does not; with ``retry_on`` given, only the
exceptions it names do; without it, every exception does. The budget, ``max_retries``, is an
int or None (retry forever, each wait capped at ``retry_backoff_cap``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskforge.errors import ConfigurationError
from taskforge.retry import Fail, Retry

ExceptionTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The exception filters of one task (the budget travels with each job)."""

    retry_on: ExceptionTypes | None = None
    dont_retry_on: ExceptionTypes = ()

    def retries(self, exc: BaseException) -> bool:
        """True when ``exc`` may be retried (the budget aside)."""
        if isinstance(exc, Fail):
            return False
        if isinstance(exc, Retry):
            return True
        if self.dont_retry_on and isinstance(exc, self.dont_retry_on):
            return False
        return self.retry_on is None or isinstance(exc, self.retry_on)


#: The policy of a task without filters: every exception retries (the budget aside).
RETRY_EVERYTHING = RetryPolicy()


def check_exception_types(label: str, value: Any) -> ExceptionTypes:
    """``value`` when it is a tuple of exception classes; else ConfigurationError saying so."""
    example = f"{label}=(ConnectionError, TimeoutError)"
    if not isinstance(value, tuple):
        shown = getattr(value, "__name__", repr(value))
        raise ConfigurationError(
            f"{label} must be a tuple of exception classes, got {shown}; write {example}"
            + (f" or {label}=({shown},)" if _is_exception_type(value) else "")
        )
    for item in value:
        if not _is_exception_type(item):
            raise ConfigurationError(
                f"{label} holds {item!r}, which is not an exception class; write {example}"
            )
    return value


def check_max_retries(value: Any) -> int | None:
    """``value`` when it is an int >= 0 or None (forever); else ConfigurationError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"max_retries must be an int >= 0, or None to retry forever, got {value!r}"
        )
    return value


def _is_exception_type(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


__all__ = [
    "RETRY_EVERYTHING",
    "ExceptionTypes",
    "RetryPolicy",
    "check_exception_types",
    "check_max_retries",
]
