"""Time `kit run --smoke` over every notebook (goal: <= 4 minutes in total).

Baseline, measured in the same run: the same runner on a one-cell notebook (kernel start,
papermill, nbconvert HTML), i.e. the fixed cost every notebook pays before its own work.
Uses a temporary report folder and a temporary BentoML store.

    .venv/bin/python bench/notebooks.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kit.runner import discover, run_notebooks  # noqa: E402

GOAL_S = 240.0


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kit-bench-nb-") as tmp:
        os.environ["BENTOML_HOME"] = str(Path(tmp) / "bentoml")
        start = time.perf_counter()
        base = run_notebooks([ROOT / "tests" / "notebooks" / "tiny.ipynb"], smoke=True, out=Path(tmp) / "base",
                             echo=False)
        baseline = time.perf_counter() - start
        assert base.ok, base.runs[0].error
        start = time.perf_counter()
        report = run_notebooks(discover(folder=ROOT / "notebooks"), smoke=True, out=Path(tmp) / "reports",
                               echo=False)
        total = time.perf_counter() - start
    print(f"{'notebook':<22}{'seconds':>9}{'x baseline':>12}  status")
    for r in report.runs:
        print(f"{r.name:<22}{r.seconds:>9.1f}{r.seconds / baseline:>12.1f}  {'ok' if r.ok else 'FAILED'}")
    print(f"{'one-cell baseline':<22}{baseline:>9.1f}{1.0:>12.1f}  (kernel start + papermill + HTML)")
    print(f"{'total kit run --smoke':<22}{total:>9.1f}{total / baseline:>12.1f}  "
          f"goal <= {GOAL_S:.0f} s: {'met' if total <= GOAL_S else 'NOT met'}; "
          f"{len(report.runs)} notebooks, cpu count {os.cpu_count()}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
