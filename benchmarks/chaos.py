"""Chaos runner: real workers, a real Redis, faults on a schedule, and a ledger that tells truth.

    python -m benchmarks.chaos            # the short form (about a minute), as CI runs it
    python -m benchmarks.chaos --long     # the figures in the README's Reliability section
    python -m benchmarks.chaos --long -s kill_workers -s rss

The scenarios and their checker live in :mod:`tests.support.chaos` (the tests call them
directly, ``tests/system/test_chaos.py``); this script runs them and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/chaos.py` as well as `-m benchmarks.chaos`
    sys.path.insert(0, str(ROOT))

from tests.support.chaos import LONG, SHORT, table  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Run scenarios, print the table; exit 1 if any job was lost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="the long form (README figures)")
    parser.add_argument("-s", "--scenario", action="append", help="run only these (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the reports here")
    opts = parser.parse_args(argv)
    plan = LONG if opts.long else SHORT
    names = opts.scenario or list(plan)
    reports = []
    for name in names:
        print(f"chaos: {name} ...", file=sys.stderr, flush=True)
        reports.append(plan[name]())
        print(table(reports[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(reports))
    if opts.json:
        opts.json.write_text(json.dumps([asdict(r) for r in reports], indent=2, default=str))
    return 1 if any(r.lost for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
