"""``kit data`` and ``kit train``."""

from __future__ import annotations

import argparse
from typing import Any

from kit.cli._common import add_data_args, add_net_args, data_config, given, net_fields
from kit.config import TrainConfig
from kit.config._data import ACTIVATIONS, NORMS, SCHEDULERS
from kit.errors import ConfigError


def cmd_train(args: argparse.Namespace) -> int:
    """Train, save the bundle, print the metrics table."""
    from kit.metrics import table
    from kit.train import train

    fields = given(args, epochs="epochs", seed="seed", lr="lr", batch_size="batch_size", patience="patience",
                   dropout="dropout", weight_decay="weight_decay", label_smoothing="label_smoothing",
                   device="device", activation="activation", norm="norm", scheduler="scheduler",
                   warmup_epochs="warmup_epochs", monitor="monitor")
    if args.hidden:
        try:
            fields["hidden"] = tuple(int(h) for h in args.hidden.split(","))
        except ValueError:
            raise ConfigError(f"--hidden must be integers separated by commas, but got {args.hidden!r}",
                              field="hidden") from None
    if args.augment:
        fields["augment"] = tuple(a.strip() for a in args.augment.split(",") if a.strip())
    result = train(data_config(args), TrainConfig().replace(**fields, **net_fields(args)), progress=not args.quiet,
                   baselines=not args.no_baselines)
    out = result.bundle.save(args.out)
    print(f"network {result.bundle.net.describe()}")
    print(table(result.bundle.metrics))
    if result.baselines is not None:
        print(result.baselines)
    export = result.bundle.spec.get("onnx", {})
    if "error" in export:
        print(f"ONNX export failed (torch stays the runtime): {export['error']}")
    elif export:
        print(f"ONNX export checked against torch: max abs diff {export['max_abs_diff']:.2e} ({export['exporter']})")
    print(f"best epoch {result.best_epoch} of {len(result.history)} ({result.stopped}); bundle saved to {out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """Print the data summary."""
    from kit.data import load

    print(load(data_config(args)).summary())
    return 0


def register(sub: Any) -> None:
    """Add ``train`` and ``data``."""
    p = sub.add_parser("train", help="train a model and save its bundle",
                       description="Train a network on a dataset, save the bundle to --out (with its ONNX "
                                   "export) and print its metrics next to the baselines on the same split.")
    add_data_args(p)
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 200, early stopping on)")
    p.add_argument("--seed", type=int, help="training seed (default 0)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int)
    add_net_args(p)
    p.add_argument("--hidden", help="hidden widths, comma separated, e.g. 128,64 (networks that take hidden)")
    p.add_argument("--dropout", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float, help="label smoothing of the training loss (classifiers)")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the linear and gradient-boosting baselines on the same split")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0 disables)")
    p.add_argument("--activation", choices=ACTIVATIONS, help="activation (networks that take activation)")
    p.add_argument("--norm", choices=NORMS, help="normalization after each hidden layer (networks that take norm)")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="learning-rate schedule (default cosine)")
    p.add_argument("--warmup-epochs", type=int, help="linear warm-up epochs of the cosine schedule")
    p.add_argument("--monitor", help="validation metric of early stopping (default auto: the training objective "
                                     "for classifiers, RMSE for regression)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--augment", help="images: light augmentation of training batches, e.g. flip,shift (default none)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("data", help="print a dataset summary")
    add_data_args(p)
    p.set_defaults(func=cmd_data)
