"""Run every benchmark in bench/ and print figures beside their budgets; exit 1 if one is over.

    .venv/bin/python -m bench.run        (from the repository root; one benchmark: -m bench.bench_plan)
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> int:
    ok = True
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        module = importlib.import_module(f"bench.{path.stem}")
        ok = module.run() and ok
    print("\nall benchmarks within budget" if ok else "\nsome benchmarks are over budget")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
