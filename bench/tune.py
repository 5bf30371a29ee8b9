"""Tuning strategies on the same data, seed and trial count, measured in one run.

1. TPE + median pruning (kit's default)
2. TPE without pruning (the baseline for the pruning speed-up)
3. random search without pruning

Each runs ``--trials`` trials of the default MLP space on a fresh SQLite study, one worker,
torch threads 1. Printed per strategy: tuning wall time (the retrain of the best config is not
timed), best validation log loss (the optimized value) and the validation accuracy of the
retrained best model. Then the ratio time(no pruning) / time(pruning) (goal >= 2x with the best
accuracy within 0.5 point), and trials per minute with 2 workers vs 1 (TPE + median).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import optuna

import kit
from kit.data import Dataset, load
from kit.train import train
from kit.tune import tune


def run(label: str, data: Dataset, root: str, **kwargs: object) -> dict[str, object]:
    start = time.perf_counter()
    result = tune(data, run_dir=os.path.join(root, label.replace(" ", "_")), study_name=label, retrain=False,
                  **kwargs)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    bundle = train(data, result.best_config, splits=data.split(0.15, 0.15, 0)).bundle
    done = [t for t in result.study.trials if t.datetime_complete is not None and t.datetime_start is not None]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"label": label, "seconds": seconds, "span": span, "log_loss": result.best_value,
            "accuracy": 100 * bundle.metrics["valid"]["accuracy"], "counts": result.counts(),
            "trials": sum(result.counts().get(s, 0) for s in ("COMPLETE", "PRUNED"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker-trials", type=int, default=16)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("kit").setLevel(logging.WARNING)
    data = load(args.data)
    base = kit.TrainConfig(epochs=args.epochs, patience=args.patience)
    common = {"n_trials": args.trials, "config": base, "seed": args.seed, "threads": 1}
    with tempfile.TemporaryDirectory() as root:
        train(data, kit.TrainConfig(epochs=1))  # warm-up: imports, allocator
        rows = [run("tpe + median", data, root, pruner="median", sampler="tpe", **common),
                run("tpe, no pruning", data, root, pruner="none", sampler="tpe", **common),
                run("random, no pruning", data, root, pruner="none", sampler="random", **common)]
        wk = {"n_trials": args.worker_trials, "config": base, "seed": args.seed, "threads": 1, "pruner": "median"}
        one = run("1 worker", data, root, n_workers=1, **wk)
        two = run("2 workers", data, root, n_workers=2, **wk)

    print(f"data {args.data}, {args.trials} trials, max {args.epochs} epochs (patience {args.patience}), "
          f"seed {args.seed}, torch threads 1, {os.cpu_count()} CPUs")
    print(f"{'strategy':20} {'seconds':>8} {'best log loss':>14} {'valid acc %':>12}  trials")
    for r in rows:
        print(f"{r['label']:20} {r['seconds']:8.1f} {r['log_loss']:14.4f} {r['accuracy']:12.2f}  {r['counts']}")
    pruned, unpruned = rows[0], rows[1]
    ratio = float(unpruned["seconds"]) / float(pruned["seconds"])  # type: ignore[arg-type]
    gap = float(unpruned["accuracy"]) - float(pruned["accuracy"])  # type: ignore[arg-type]
    print(f"ratio time(no pruning)/time(pruning): {ratio:.2f}x (goal >= 2x); "
          f"best accuracy gap {gap:+.2f} points (goal within 0.5)")
    for key, what in (("seconds", "wall time incl. worker start-up"), ("span", "first trial start to last end")):
        rates = {r["label"]: 60 * float(r["trials"]) / float(r[key]) for r in (one, two)}  # type: ignore[arg-type]
        print(f"trials/minute ({what}): 1 worker {rates['1 worker']:.1f}, 2 workers {rates['2 workers']:.1f} "
              f"({rates['2 workers'] / rates['1 worker']:.2f}x; {args.worker_trials} trials, TPE + median)")


if __name__ == "__main__":
    main()
