"""kit.train on a user's builder vs the same hand-written loop; ONNX export check times; the zoo's quality.

Three parts (``--part``; all by default):

* ``speed``: breast_cancer, the same split, the same custom network (``tests/custom_net.py`` named
  by import path, as a user would), AdamW, batch 64, a fixed number of epochs (early stopping off),
  one validation pass per epoch, interleaved repeats, torch threads 1. kit additionally fits its
  preprocessor, checks the builder contract, runs the LR schedule, keeps best weights, builds the
  bundle and computes the metrics table; the hand-written loop standardizes with scikit-learn and
  does none of that. kit's baselines (``train(baselines=False)`` here) and the ONNX export (made at
  save time) are timed on their own. Goal: time ratio kit / hand-written <= 1.05.
* ``export``: seconds to export ``ft_transformer`` (and the other zoo networks) to ONNX and check
  the graph against torch at batch sizes 1, 5 and 64 (what ``bundle.save`` does once).
* ``zoo``: test accuracy / R² of mlp, resmlp and ft_transformer with their defaults and kit's
  default recipe, on the four built-in data sets, mean over split-and-training seeds 0-2, next to
  the best baseline (logistic or ridge regression, HistGradientBoosting) on the same splits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # custom_net: the user's module

import custom_net  # noqa: E402

import kit  # noqa: E402
from kit.quantize import export_onnx  # noqa: E402
from kit.train import train  # noqa: E402

NET = "custom_net:build"
PARAMS = {"width": 64, "blocks": 2}


def hand_written(splits, config: kit.TrainConfig) -> float:
    """What a user writes by hand around the same builder: scale, loop, evaluate. Returns test accuracy."""
    torch.manual_seed(config.seed)
    scaler = StandardScaler().fit(splits.train.X)
    xtr = torch.tensor(scaler.transform(splits.train.X), dtype=torch.float32)
    xva = torch.tensor(scaler.transform(splits.valid.X), dtype=torch.float32)
    xte = torch.tensor(scaler.transform(splits.test.X), dtype=torch.float32)
    ytr, yva = torch.tensor(splits.train.y), torch.tensor(splits.valid.y)
    model = custom_net.build(xtr.shape[1], 2, **PARAMS)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = torch.nn.functional.cross_entropy
    for _ in range(config.epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), config.batch_size):
            idx = perm[i:i + config.batch_size]
            if len(idx) < 2:  # a batch of one breaks BatchNorm (kit skips it too)
                continue
            loss = loss_fn(model(xtr[idx]), ytr[idx], label_smoothing=config.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            loss_fn(model(xva), yva).item()
    with torch.no_grad():
        return float((model(xte).argmax(1).numpy() == splits.test.y).mean())


def speed(epochs: int, repeats: int) -> None:
    ds = kit.load("breast_cancer")
    splits = ds.split(0.15, 0.15, 0)
    config = kit.TrainConfig(net=NET, net_params=PARAMS, epochs=epochs, patience=0)
    train(ds, config.replace(epochs=2), splits=splits, baselines=False)  # warm-up: imports, allocator
    hand_written(splits, config.replace(epochs=2))
    kit_times, hand_times, kit_acc, hand_acc = [], [], 0.0, 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        result = train(ds, config, splits=splits, baselines=False)
        kit_times.append(time.perf_counter() - t)
        kit_acc = result.bundle.metrics["test"]["accuracy"]
        t = time.perf_counter()
        hand_acc = hand_written(splits, config)
        hand_times.append(time.perf_counter() - t)
    t = time.perf_counter()
    with_baselines = train(ds, config, splits=splits)
    baseline_s = time.perf_counter() - t - statistics.median(kit_times)
    fits = {n: m["seconds"] for n, m in with_baselines.baselines.models.items()}
    export_s = []
    for _ in range(2):  # the first export in a process also warms up torch.export / dynamo
        t = time.perf_counter()
        export_onnx(with_baselines.bundle)
        export_s.append(time.perf_counter() - t)
    k, h = statistics.median(kit_times), statistics.median(hand_times)
    print(f"speed: {NET} {PARAMS}, breast_cancer, {epochs} epochs, median of {repeats} interleaved, torch threads 1")
    print(f"{'':14} {'seconds':>8} {'test acc':>9}")
    print(f"{'kit.train':14} {k:8.3f} {kit_acc:9.4f}")
    print(f"{'hand-written':14} {h:8.3f} {hand_acc:9.4f}")
    print(f"ratio kit/hand-written: {k / h:.3f} (goal <= 1.05)")
    print(f"baselines (not in the ratio): +{baseline_s:.2f} s ({', '.join(f'{n} {s:.2f} s' for n, s in fits.items())})")
    print(f"ONNX export + check at save (not in the ratio): {export_s[0]:.2f} s the first in a process, "
          f"{export_s[1]:.2f} s after")


def export_times(repeats: int) -> None:
    print("export: torch.onnx.export (dynamo) + ONNX Runtime check at batch sizes 1, 5 and 64, median of "
          f"{repeats} after one warm-up export")
    print(f"{'network':16} {'data':14} {'n_in':>5} {'seconds':>8} {'max abs diff':>13} {'exporter':>9}")
    for net in ("ft_transformer", "resmlp", "mlp"):
        for data in ("breast_cancer", "digits"):
            bundle = train(data, kit.TrainConfig(net=net, epochs=2, patience=0), baselines=False).bundle
            export_onnx(bundle)
            times, info = [], {}
            for _ in range(repeats):
                t = time.perf_counter()
                _, info = export_onnx(bundle)
                times.append(time.perf_counter() - t)
            print(f"{net:16} {data:14} {bundle.net.n_in:5d} {statistics.median(times):8.2f} "
                  f"{info['max_abs_diff']:13.2e} {info['exporter']:>9}")


DATASETS = (("breast_cancer", "accuracy"), ("wine", "accuracy"), ("digits", "accuracy"), ("diabetes", "r2"))


def zoo(seeds: list[int]) -> None:
    print(f"zoo: test metric, mean over seeds {seeds} (split and training seed), defaults; best baseline on the "
          "same splits")
    nets = ("mlp", "resmlp", "ft_transformer")
    print(f"{'data':14} {'metric':8} " + " ".join(f"{n:>15}" for n in nets) + f" {'best baseline':>15}  seconds")
    for data, metric in DATASETS:
        scores: dict[str, list[float]] = {n: [] for n in nets}
        best: list[float] = []
        seconds: dict[str, float] = {n: 0.0 for n in nets}
        for seed in seeds:
            config = kit.DataConfig(source=data, seed=seed)
            for net in nets:
                t = time.perf_counter()
                result = train(config, kit.TrainConfig(net=net, seed=seed), baselines=net == "mlp")
                seconds[net] += time.perf_counter() - t
                scores[net].append(result.bundle.metrics["test"][metric])
                if result.baselines is not None:
                    best.append(result.baselines.best()[1])
        row = " ".join(f"{np.mean(scores[n]):15.4f}" for n in nets)
        print(f"{data:14} {metric:8} {row} {np.mean(best):15.4f}  " + "/".join(f"{seconds[n]:.0f}" for n in nets),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=["speed", "export", "zoo", "all"], default="all")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("speed", "all"):
        speed(args.epochs, args.repeats)
    if args.part in ("export", "all"):
        export_times(max(1, args.repeats // 2))
    if args.part in ("zoo", "all"):
        zoo([int(s) for s in args.seeds.split(",")])
    print(f"numpy {np.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
