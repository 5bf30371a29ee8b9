"""Cost of the release gate, check by check, against training the same model (baseline, same run);
then the reliability suite's figures from tests/artifacts/reliability.json when a run left them.

    .venv/bin/python bench/reliability.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

import kit
from kit.gate import GateConfig, check
from kit.train import train

ARTIFACT = Path(__file__).resolve().parent.parent / "tests" / "artifacts" / "reliability.json"


def main() -> None:
    rows = []
    for name in ("breast_cancer", "wine", "diabetes"):
        start = time.perf_counter()
        bundle = train(name, kit.TrainConfig(epochs=60, patience=15, seed=0)).bundle
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        report = check(bundle, config=GateConfig())
        gate_s = time.perf_counter() - start
        per = {c.name: c.seconds for c in report.checks}
        slowest = max(per, key=lambda k: per[k])
        rows.append({"dataset": name, "passed": report.passed, "train_s": train_s, "gate_s": gate_s,
                     "gate/train": gate_s / train_s, "slowest check": f"{slowest} ({per[slowest]:.2f}s)",
                     "p99_ms": next(c.value for c in report.checks if c.name == "latency_p99")})
        print(f"\n{name}: per-check seconds")
        print(pd.Series(per).to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nrelease gate vs training (baseline: training the same model in this run)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if ARTIFACT.is_file():
        print(f"\nreliability suite (last run, from {ARTIFACT.relative_to(ARTIFACT.parents[2])})")
        for part, row in json.loads(ARTIFACT.read_text()).items():
            extra = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("tried", "failures", "at"))
            print(f"  {part:15} {row['tried']:>6} tried {row['failures']:>3} failures  {extra}")

if __name__ == "__main__":
    main()
