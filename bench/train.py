"""kit's training loop vs a minimal hand-written torch loop, same data, model and epochs.

Both sides: breast_cancer, the same split, a 30-128-64-2 MLP, AdamW, batch 64, a fixed number
of epochs (early stopping off), one validation pass per epoch. kit additionally fits its
preprocessor, runs the LR schedule, keeps best weights, builds the bundle and computes the
metrics table; the baseline standardizes with scikit-learn and does none of that.

Prints both wall times (median of interleaved repeats), the ratio kit / baseline (goal <= 1.05)
and both test accuracies.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

import kit
from kit import nets
from kit.train import train


def baseline(splits, config: kit.TrainConfig) -> float:
    """What a user writes by hand: scale, loop, evaluate. Returns test accuracy."""
    torch.manual_seed(config.seed)
    scaler = StandardScaler().fit(splits.train.X)
    xtr = torch.tensor(scaler.transform(splits.train.X), dtype=torch.float32)
    xva = torch.tensor(scaler.transform(splits.valid.X), dtype=torch.float32)
    xte = torch.tensor(scaler.transform(splits.test.X), dtype=torch.float32)
    ytr, yva = torch.tensor(splits.train.y), torch.tensor(splits.valid.y)
    model = nets.build(nets.make_spec(xtr.shape[1], 2, config))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = torch.nn.functional.cross_entropy
    for _ in range(config.epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), config.batch_size):
            idx = perm[i:i + config.batch_size]
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            loss_fn(model(xva), yva).item()
    with torch.no_grad():
        return float((model(xte).argmax(1).numpy() == splits.test.y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = kit.load("breast_cancer")
    splits = ds.split(0.15, 0.15, 0)
    config = kit.TrainConfig(epochs=args.epochs, patience=0)
    kit_times, base_times, kit_acc, base_acc = [], [], 0.0, 0.0
    train(ds, kit.TrainConfig(epochs=2), splits=splits)  # warm-up: imports, allocator
    baseline(splits, kit.TrainConfig(epochs=2))
    for _ in range(args.repeats):
        t = time.perf_counter()
        result = train(ds, config, splits=splits)
        kit_times.append(time.perf_counter() - t)
        kit_acc = result.bundle.metrics["test"]["accuracy"]
        t = time.perf_counter()
        base_acc = baseline(splits, config)
        base_times.append(time.perf_counter() - t)
    k, b = statistics.median(kit_times), statistics.median(base_times)
    print(f"{'':10} {'seconds':>8} {'test acc':>9}")
    print(f"{'kit':10} {k:8.3f} {kit_acc:9.4f}")
    print(f"{'baseline':10} {b:8.3f} {base_acc:9.4f}")
    print(f"ratio kit/baseline: {k / b:.3f} (goal <= 1.05); {args.epochs} epochs, "
          f"median of {args.repeats}, torch threads 1, numpy {np.__version__}")


if __name__ == "__main__":
    main()
