"""The exponential backoff schedule, and what a task raises to steer its job: ``Retry``, ``Fail``.

The two exception classes are defined in :mod:`taskforge.errors` with every other one, and
imported here under the same names (``from taskforge.retry import Retry`` keeps working).
"""

from __future__ import annotations

import random

from taskforge.errors import Fail, Retry

#: Exponents past this add nothing: ``2**64`` times any base is past any sane cap. Bounding it
#: keeps ``max_retries=None`` (retry forever) from overflowing the float at retry 1025.
_MAX_EXPONENT = 64


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


__all__ = ["Fail", "Retry", "backoff_s"]
