"""Retry requests, permanent failures, and the exponential backoff schedule."""

from __future__ import annotations

import math
import random
from typing import Any

from taskforge.errors import ConfigurationError

#: Exponents past this add nothing: ``2**64`` times any base is past any sane cap. Bounding it
#: keeps ``max_retries=None`` (retry forever) from overflowing the float at retry 1025.
_MAX_EXPONENT = 64


class Retry(Exception):
    """Raise inside a task to ask for another attempt.

    ``countdown_s`` overrides the backoff for this retry. ``exc`` is the cause, recorded on the
    job as its error (type, message, traceback) so ``taskforge dead list`` shows why it retried.
    The job still counts the attempt and is dead-lettered once ``max_retries`` is spent. A
    deliberate ``Retry`` retries even when ``retry_on``/``dont_retry_on`` would not.

    Raises:
        ConfigurationError: ``countdown_s`` is negative, NaN or infinite (here, in the task, so
            the worker never sees a countdown it cannot schedule).
    """

    def __init__(
        self,
        countdown_s: float | None = None,
        *,
        exc: BaseException | None = None,
        reason: str | None = None,
    ):
        if countdown_s is not None and not (
            isinstance(countdown_s, int | float) and math.isfinite(countdown_s) and countdown_s >= 0
        ):
            raise ConfigurationError(
                f"Retry countdown_s must be a finite number of seconds >= 0, got {countdown_s!r}"
            )
        self.countdown_s = countdown_s
        self.exc = exc
        self.reason = reason or (f"{type(exc).__name__}: {exc}" if exc else "retry requested")
        super().__init__(self.reason)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled across the process pool's pipe: rebuilt with its countdown, cause and reason
        # (the default would pass the reason where the countdown goes).
        return (_rebuild_retry, (self.countdown_s, self.exc, self.reason))


def _rebuild_retry(countdown_s: float | None, exc: BaseException | None, reason: str) -> Retry:
    return Retry(countdown_s, exc=exc, reason=reason)


class Fail(Exception):
    """Raise inside a task to end its job ``dead`` now, with ``reason``, never retried.

    For errors no retry can fix (a malformed address, a deleted account): the job goes to the
    dead letters with error type ``Fail`` at once, whatever ``max_retries`` says. Raise it
    ``from`` the error that decided it, and that error's traceback is recorded too.
    """

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def backoff_s(
    retry_number: int, *, base_s: float, cap_s: float = 3600.0, jitter: bool = False
) -> float:
    """Seconds to wait before retry ``retry_number`` (1-based): ``base_s * 2**(n-1)``, capped.

    With ``jitter`` the wait is drawn uniformly from [delay/2, delay] so retries of a batch that
    failed together do not return together.
    """
    if retry_number < 1:
        raise ValueError(f"retry_number is 1-based, got {retry_number}")
    delay_s: float = min(cap_s, base_s * 2.0 ** min(retry_number - 1, _MAX_EXPONENT))
    if jitter:
        delay_s = random.uniform(delay_s / 2, delay_s)
    return delay_s
