"""A dead member requeued from the dead letters runs alone: its failed workflow stays failed, and
``taskforge dead requeue`` says so."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from taskforge import WorkflowStatus, chain
from taskforge.cli import cli
from tests.workflows.test_workflows import drain, make_app, runs, t


def test_dead_requeue_warns_that_a_revived_member_does_not_resume_its_workflow(
    redis_url: str,
) -> None:
    app = make_app(redis_url)
    fail, add = t(app, "fail"), t(app, "add")
    h = chain(add.s(1, 2), fail.s(), add.s(100)).delay()
    plain = fail.delay(7)
    drain(app)
    assert h.status() is WorkflowStatus.FAILED
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": app.settings.prefix}
    runner = CliRunner()

    revived = runner.invoke(cli, ["dead", "requeue", f"wf:{h.id}:1", "--json"], env=env)
    alone = runner.invoke(cli, ["dead", "requeue", plain.id], env=env)
    drain(app)

    assert revived.exit_code == 0, revived.output
    assert json.loads(revived.stdout)["requeued"] == 1  # the warning leaves stdout JSON
    assert "does not resume its failed workflow" in revived.stderr
    assert h.id in revived.stderr
    assert alone.exit_code == 0 and "workflow" not in alone.stderr
    assert len(runs(app, "fail")) == 4  # both ran again
    assert h.status() is WorkflowStatus.FAILED
    assert runs(app, "add") == [(1, 2)]  # the step after the revived member never ran
    assert [m.status for m in h.info().members] == ["succeeded", "dead", "cancelled"]
