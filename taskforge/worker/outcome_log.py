"""One JSON line per job outcome (``taskforge worker --json``), with the fields of its event."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from taskforge.middleware import RunOutcome


def outcome_line(
    *, job_id: str, task: str, queue: str, attempt: int, outcome: RunOutcome, worker: str
) -> dict[str, Any]:
    """The fields of a ``job:updates`` event for this outcome (times in epoch seconds)."""
    now = time.time()
    line: dict[str, Any] = {
        "job_id": job_id,
        "task": task,
        "queue": queue,
        "status": outcome.status,
        "attempt": attempt,
        "timestamp": round(now, 3),
        "duration_ms": round(outcome.duration_s * 1000, 3),
        "worker": worker,
    }
    if outcome.error_type is not None:
        line["error"] = f"{outcome.error_type}: {outcome.error}"
    if outcome.retry_in_s is not None:
        line["run_at"] = round(now + outcome.retry_in_s, 3)
    return line


class JsonLines:
    """Writes each outcome as one JSON object per line (stdout by default), flushed at once."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream if stream is not None else sys.stdout

    def __call__(self, line: dict[str, Any]) -> None:
        self.stream.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.stream.flush()


__all__ = ["JsonLines", "outcome_line"]
