"""Chaos for workflows: chains and chords under worker SIGKILLs and a Redis ``kill -9``.

    python -m benchmarks.chaos_workflows            # short form
    python -m benchmarks.chaos_workflows --long     # the README's figures

The scenarios and their checker live in :mod:`tests.support.chaos_workflows` (the tests call
them directly, ``tests/system/test_workflow_chaos.py``); this script runs them and prints the
table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.chaos import table  # noqa: E402
from tests.support.chaos_workflows import LONG, SHORT  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the workflow scenarios, print the table; exit 1 if a workflow was lost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="the long form (README figures)")
    parser.add_argument("-s", "--scenario", action="append", help="run only these (repeatable)")
    opts = parser.parse_args(argv)
    plan = LONG if opts.long else SHORT
    reports = []
    for name in opts.scenario or list(plan):
        print(f"chaos: {name} ...", file=sys.stderr, flush=True)
        reports.append(plan[name]())
        print(table(reports[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(reports))
    bad = any(r.lost or r.notes.get("callbacks_twice") for r in reports)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
