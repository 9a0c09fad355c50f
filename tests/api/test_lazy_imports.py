"""A plain worker or producer imports only what it uses: the package's optional names (the admin
API, the cache, dead letters, the test bed, ...) load on first use, and still import and type."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import taskforge

#: Modules a process that sends jobs, or runs a plain worker, never needs.
OPTIONAL = ("taskforge.admin", "taskforge.cache", "taskforge.deadletters", "taskforge.guide_queue",
            "taskforge.pubsub", "taskforge.testing", "taskforge.health",
            "taskforge.protocol.inspection")  # fmt: skip


#: Modules a plain worker (no periodic task, no process pool, no metrics port) never needs: the
#: cron scheduler, the workflow producer side, the process pool, and the CLI's other commands.
NOT_IN_A_PLAIN_WORKER = ("taskforge.cron.runner", "taskforge.workflow.client",
                         "taskforge.worker.pool", "multiprocessing", "taskforge.demo",
                         "http.server", "croniter", "fakeredis")  # fmt: skip
NOT_IN_TASKFORGE_WORKER = (*NOT_IN_A_PLAIN_WORKER, *OPTIONAL, "rich", "taskforge.cli.queues",
                           "taskforge.cli.dead", "taskforge.dashboard")  # fmt: skip


def printed_by(code: str) -> set[str]:
    """The words a fresh interpreter prints running ``code``."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def loaded_after(code: str, prefix: str = "taskforge") -> set[str]:
    """The modules (named ``prefix...``) a fresh interpreter has loaded after running ``code``."""
    return printed_by(
        f"{code}\nimport sys\nprint(*(m for m in sys.modules if m.startswith({prefix!r})))"
    )


def packages(modules: set[str]) -> set[str]:
    """``modules`` and every package above each (``a.b.c``: ``a``, ``a.b``, ``a.b.c``)."""
    parts = (m.split(".") for m in modules)
    return {".".join(p[:i]) for p in parts for i in range(1, len(p) + 1)}


@pytest.mark.parametrize(
    "code",
    ["import taskforge", "import taskforge\nfrom taskforge import Worker, Taskforge, Settings"],
)
def test_a_producer_or_a_plain_worker_loads_no_optional_module(code: str) -> None:
    loaded = loaded_after(code)

    assert "taskforge" in loaded
    assert loaded.isdisjoint(OPTIONAL), sorted(loaded.intersection(OPTIONAL))


def test_a_producer_does_not_load_the_worker() -> None:
    assert "taskforge.worker" not in loaded_after("import taskforge")


def test_every_lazy_name_is_public_and_declared_for_type_checkers() -> None:
    tree = ast.parse(Path(taskforge.__file__).read_text())
    checked = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    lazy = set(taskforge._LAZY)

    assert lazy <= set(taskforge.__all__)
    assert checked == lazy


def test_a_lazy_name_imports_and_an_unknown_one_raises() -> None:
    from taskforge import Admin, cached

    assert Admin is taskforge.Admin and callable(cached)
    assert "DeadFilter" in dir(taskforge)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        taskforge.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_a_plain_worker_loads_no_scheduler_pool_or_workflow_producer() -> None:
    loaded = loaded_after("import taskforge\nfrom taskforge import Worker", prefix="")

    assert "taskforge.worker.lifecycle" in loaded
    assert packages(loaded).isdisjoint(NOT_IN_A_PLAIN_WORKER), sorted(
        packages(loaded).intersection(NOT_IN_A_PLAIN_WORKER)
    )


def test_taskforge_worker_loads_only_its_own_command_group() -> None:
    code = (
        "import taskforge.cli\ntaskforge.cli.registered('worker')\nimport tests.support.tasks_e2e"
    )
    loaded = loaded_after(code, prefix="")

    assert {"taskforge.cli.worker", "taskforge.worker.lifecycle", "typer"} <= loaded
    assert packages(loaded).isdisjoint(NOT_IN_TASKFORGE_WORKER), sorted(
        packages(loaded).intersection(NOT_IN_TASKFORGE_WORKER)
    )


def test_the_cli_object_has_every_command_group() -> None:
    names = printed_by("from taskforge.cli import cli\nimport typer.main\n"
                       "print(*typer.main.get_command(cli).commands)")  # fmt: skip

    assert {"worker", "demo", "queues", "job", "dead", "workflow", "health", "dashboard"} <= names


@pytest.mark.parametrize("enabled", [True, False])
def test_importing_taskforge_keeps_the_collector_as_it_was(enabled: bool) -> None:
    code = f"import gc\nif not {enabled}: gc.disable()\nimport taskforge\n"
    code += "print(gc.isenabled(), gc.get_freeze_count())"

    # Paused for the imports, restored after; and nothing of the importer's frozen.
    assert printed_by(code) == {str(enabled), "0"}
