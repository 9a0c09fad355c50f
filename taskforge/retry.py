"""Retry requests and the exponential backoff schedule."""

from __future__ import annotations

import random


class Retry(Exception):
    """Raise inside a task to ask for another attempt.

    ``countdown_s`` overrides the backoff for this retry. The job still counts the attempt and is
    dead-lettered once ``max_retries`` is spent.
    """

    def __init__(self, countdown_s: float | None = None, *, reason: str = "retry requested"):
        if countdown_s is not None and countdown_s < 0:
            raise ValueError(f"countdown_s must be >= 0, got {countdown_s}")
        self.countdown_s = countdown_s
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
    delay_s: float = min(cap_s, base_s * 2.0 ** (retry_number - 1))
    if jitter:
        delay_s = random.uniform(delay_s / 2, delay_s)
    return delay_s
