"""Tuning strategies on the same data, seed and trial count, measured in one run.

1. TPE + median pruning (kit's default)
2. TPE without pruning (the baseline for the pruning speed-up)
3. random search without pruning

Each runs ``--trials`` trials of the default MLP space on a fresh SQLite study, one worker,
torch threads 1, once per seed in ``--seeds`` (which trials a sampler proposes, and so the best
one found, depends on the seed: one seed says little). Printed per strategy and seed: tuning wall
time (the retrain of the best config is not timed), best validation log loss (the optimized
value) and the validation accuracy of the retrained best model. Then, over all seeds, the ratio
time(no pruning) / time(pruning) (goal >= 2x with the mean best accuracy within 0.5 point), and
trials per minute with 2 workers vs 1 (TPE without pruning), with and without the
workers' start-up (a spawned worker imports torch and loads the data before the first trial).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
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
            "trials": sum(result.counts().get(s, 0) for s in ("COMPLETE", "PRUNED")),
            "epochs": sum(len(t.intermediate_values) for t in result.study.trials)}


STRATEGIES = (("tpe + median", "median", "tpe"), ("tpe, no pruning", "none", "tpe"),
              ("random, no pruning", "none", "random"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--worker-trials", type=int, default=30)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("kit").setLevel(logging.WARNING)
    data = load(args.data)
    base = kit.TrainConfig(epochs=args.epochs, patience=args.patience)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as root:
        # warm-up, so that no strategy pays the one-time imports (torch, Optuna's storage and samplers)
        run("warm-up", data, root, n_trials=2, train=kit.TrainConfig(epochs=2), seed=0, threads=1)
        for seed in args.seeds:  # strategies interleaved per seed, so a slow spell of the machine hits all
            for label, pruner, sampler in STRATEGIES:
                rows.append({**run(f"{label} s{seed}", data, root, n_trials=args.trials, train=base, seed=seed,
                                   threads=1, pruner=pruner, sampler=sampler), "strategy": label, "seed": seed})
        # no pruning here: which trials get pruned depends on how the workers interleave, which would
        # confound the throughput comparison
        wk = {"n_trials": args.worker_trials, "config": base, "seed": 0, "threads": 1, "pruner": "none"}
        one = run("1 worker", data, root, n_workers=1, **wk)
        two = run("2 workers", data, root, n_workers=2, **wk)

    print(f"data {args.data}, {args.trials} trials, max {args.epochs} epochs (patience {args.patience}), "
          f"seeds {args.seeds}, torch threads 1, {os.cpu_count()} CPUs")
    print(f"{'strategy':20} {'seed':>4} {'seconds':>8} {'epochs':>7} {'best log loss':>14} {'valid acc %':>12}  trials")
    for r in rows:
        print(f"{r['strategy']:20} {r['seed']:>4} {r['seconds']:8.1f} {r['epochs']:>7} {r['log_loss']:14.4f} "
              f"{r['accuracy']:12.2f}  {r['counts']}")
    total = {label: sum(float(r["seconds"]) for r in rows if r["strategy"] == label)  # type: ignore[arg-type]
             for label, _, _ in STRATEGIES}
    acc = {label: statistics.mean(float(r["accuracy"]) for r in rows if r["strategy"] == label)  # type: ignore[arg-type]
           for label, _, _ in STRATEGIES}
    for label, _, _ in STRATEGIES:
        print(f"{label:20} total {total[label]:6.1f} s over {len(args.seeds)} seeds, mean best accuracy "
              f"{acc[label]:.2f}%")
    ratio = total["tpe, no pruning"] / total["tpe + median"]
    gap = acc["tpe, no pruning"] - acc["tpe + median"]
    print(f"ratio time(no pruning)/time(pruning): {ratio:.2f}x (goal >= 2x); mean best accuracy gap "
          f"{gap:+.2f} points (goal within 0.5)")
    for key, what in (("seconds", "wall time incl. worker start-up"), ("span", "first trial start to last end")):
        rates = {r["label"]: 60 * float(r["trials"]) / float(r[key]) for r in (one, two)}  # type: ignore[arg-type]
        print(f"trials/minute ({what}): 1 worker {rates['1 worker']:.1f}, 2 workers {rates['2 workers']:.1f} "
              f"({rates['2 workers'] / rates['1 worker']:.2f}x; {args.worker_trials} trials, TPE, no pruning)")


if __name__ == "__main__":
    main()
