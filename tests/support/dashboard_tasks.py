"""Tasks the dashboard's browser tests run in a real ``taskforge worker`` subprocess.

``taskforge worker tests.support.dashboard_tasks:app`` reads ``REDIS_URL`` and
``TASKFORGE_PREFIX``; the test points the same app at the same Redis and prefix.
"""

from __future__ import annotations

from taskforge import Taskforge
from taskforge.driver.connection import sync_client

app = Taskforge()


def flag_key(name: str) -> str:
    """A Redis key a test sets to let :func:`flaky` succeed."""
    return f"{app.settings.prefix}:dash-test:{name}"


@app.task(name="shop.add")
def add(a: int, b: int = 0) -> int:
    """Adds."""
    return a + b


@app.task(name="shop.charge", max_retries=0)
def charge(card: str) -> None:
    """Always declined: a dead letter with a traceback."""
    raise ValueError(f"card {card} declined by the bank")


@app.task(name="shop.flaky", max_retries=0)
def flaky(flag: str) -> str:
    """Fails until the test sets its flag key, then succeeds."""
    client = sync_client(app.settings)
    try:
        if not client.exists(flag_key(flag)):
            raise RuntimeError(f"upstream {flag} unavailable")
    finally:
        client.close()
    return "ok"


# Listed on the cron page; fires once a year, so never during a test.
app.periodic(add, cron="0 0 1 1 *", args=(1, 2), name="yearly-report", catch_up="skip")


@app.task(name="shop.total")
def total(values: list[int]) -> int:
    """A chord's callback: sums its header's values."""
    return sum(values)
