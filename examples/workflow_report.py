"""The integration guide's ``workflow.execute``, composed: fan out per tenant, gather, report.

    python examples/workflow_report.py                       # embedded memory:// server
    REDIS_URL=redis://localhost:6379/0 python examples/workflow_report.py

One worker runs in this process; in production you would run ``taskforge worker
examples.workflow_report:app`` on as many machines as you like, and ``taskforge workflow show
<id>`` draws any workflow's tree with each member's status.

The shape: a chord whose header runs ``workflow.execute`` once per tenant (side by side), whose
callback gathers their stats, chained to a step that sends the report; an ``on_failure``
callback alerts with the failed member's job id and error. The second run has a tenant whose
workflow fails: the report is never sent, the alert runs once.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from taskforge import Settings, Taskforge, Worker, WorkflowFailedError, chain, chord, group

os.environ.setdefault("REDIS_URL", "memory://workflow-report")
app = Taskforge(Settings.from_env(prefix=os.environ.get("TASKFORGE_PREFIX", "workflow-report")))


@app.task(name="workflow.execute", max_retries=0)
async def execute(workflow_id: str, tenant_id: str) -> dict[str, Any]:
    """Run one tenant's workflow; its stats go to the gather step."""
    if tenant_id.endswith("broken"):
        raise RuntimeError(f"workflow {workflow_id} has no definition for {tenant_id}")
    return {"tenant_id": tenant_id, "steps": len(tenant_id), "workflow_id": workflow_id}


@app.task(name="report.gather")
def gather(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the tenants' stats (the chord's callback: runs once, with every tenant's result)."""
    return {"tenants": len(stats), "steps": sum(s["steps"] for s in stats)}


@app.task(name="report.send")
def send(summary: dict[str, Any], to: str) -> str:
    """Send the report (here: print it)."""
    print(f"report to {to}: {summary['tenants']} tenants, {summary['steps']} steps")
    return f"sent to {to}"


@app.task(name="report.alert")
def alert(job_id: str, error: str) -> None:
    """The on_failure callback: the failed member's job id and ``"Type: message"``."""
    print(f"ALERT: {job_id} failed: {error}")


def nightly(workflow_id: str, tenants: list[str]) -> Any:
    """The whole report as one workflow."""
    fan_out = group(execute.s(workflow_id, tenant) for tenant in tenants)
    return chain(chord(fan_out, gather.s()), send.s(to="ops@example.com")).on_failure(alert.s())


async def main() -> None:
    worker = Worker(app.settings, app.registry, concurrency=10, block_s=0.5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        good = await nightly("123", ["tenant-1", "tenant-2", "tenant-3"]).adelay()
        print(f"result: {await good.aresult(timeout=30)}")
        print(good.tree())

        bad = await nightly("124", ["tenant-1", "tenant-broken"]).adelay()
        try:
            await bad.aresult(timeout=30)
        except WorkflowFailedError as exc:
            print(f"failed: {exc.job_id} {exc.error_type}: {exc.message}")
        # The alert is the workflow's last member to run; wait for it before drawing the tree.
        with anyio.fail_after(30):
            while (await bad.ainfo()).members[-1].status != "succeeded":
                await anyio.sleep(0.05)
        print(bad.tree())
        worker.stop()


if __name__ == "__main__":
    anyio.run(main)
