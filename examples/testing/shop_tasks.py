"""Tasks of a small shop, tested in ``test_shop.py`` (run: ``pytest examples/testing``)."""

from __future__ import annotations

from taskforge import current_job, task


@task(name="shop.add")
async def add(a: int, b: int) -> int:
    return a + b


@task(name="shop.send", max_retries=3)
def send(to: str) -> str:
    if "@" not in to or to.endswith(".invalid"):
        raise ValueError(f"cannot deliver to {to!r}")
    return f"sent to {to}"


@task(name="shop.build_report")
def build_report(pages: int) -> int:
    job = current_job()
    for page in range(1, pages + 1):
        job.set_progress(page / pages, f"page {page}")
    return job.attempt


@task(name="shop.signup")
def signup(user: str) -> str:
    send.delay(f"{user}@example.com")  # runs in the same drain, in eager mode too
    return f"welcome {user}"
