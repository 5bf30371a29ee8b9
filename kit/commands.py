"""Foundation subcommands: ``kit train``, ``kit data`` and ``kit demo``."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from kit.config import DataConfig, TrainConfig


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """Metrics by split as an aligned text table (splits as columns)."""
    frame = pd.DataFrame(metrics)
    return frame.to_string(float_format=lambda v: f"{v:.4f}")


def _data_config(args: argparse.Namespace) -> DataConfig:
    return DataConfig(source=args.data, target=args.target, task=args.task, seed=args.split_seed,
                      unknown_category=args.unknown_category)


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Options shared by commands that load a dataset."""
    p.add_argument("--data", default="breast_cancer",
                   help="built-in name (breast_cancer, wine, digits, diabetes) or a CSV/Parquet path")
    p.add_argument("--target", default=None, help="target column (required for files)")
    p.add_argument("--task", default="auto", choices=["auto", "binary", "multiclass", "regression"])
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/valid/test split")
    p.add_argument("--unknown-category", default="error", choices=["error", "ignore"],
                   help="what predict does with a category unseen in training")


def cmd_train(args: argparse.Namespace) -> int:
    """Train, save the bundle, print the metrics table."""
    from kit.train import train

    overrides: dict[str, Any] = {"epochs": args.epochs, "seed": args.seed, "lr": args.lr,
                                 "batch_size": args.batch_size, "patience": args.patience,
                                 "dropout": args.dropout, "device": args.device}
    if args.hidden:
        overrides["hidden"] = tuple(int(h) for h in args.hidden.split(","))
    config = TrainConfig().replace(**{k: v for k, v in overrides.items() if v is not None})
    result = train(_data_config(args), config, progress=not args.quiet)
    out = result.bundle.save(args.out)
    print(metrics_table(result.bundle.metrics))
    print(f"best epoch {result.best_epoch} of {len(result.history)} ({result.stopped}); bundle saved to {out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Print the data summary."""
    from kit.data import load

    print(load(_data_config(args)).summary())
    return 0


def register_cli(sub: Any) -> None:
    """Add ``train`` and ``data`` to the ``kit`` command."""
    p = sub.add_parser("train", help="train a model and save its bundle",
                       description="Train an MLP on a dataset, save the bundle to --out and print its metrics.")
    add_data_args(p)
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 200, early stopping on)")
    p.add_argument("--seed", type=int, help="training seed (default 0)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--hidden", help="hidden widths, comma separated, e.g. 128,64")
    p.add_argument("--dropout", type=float)
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0 disables)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("data", help="print a dataset summary")
    add_data_args(p)
    p.set_defaults(func=cmd_data)
