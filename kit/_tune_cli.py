"""The ``kit tune`` and ``kit tune-worker`` subcommands (thin layers over :mod:`kit.tune`).

The storage URL can come from ``--storage`` or the ``KIT_TUNE_STORAGE`` environment variable;
the environment keeps a database password out of the process list and the shell history.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

STORAGE_ENV = "KIT_TUNE_STORAGE"


def _space(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    import yaml

    from kit.errors import ConfigError

    try:
        with open(path, encoding="utf-8") as fh:
            value = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read search space file {path}: {exc}", file=path) from None
    if not isinstance(value, dict):
        raise ConfigError(f"search space file {path} must hold a mapping of name to spec", file=path)
    return value


def cmd_tune(args: argparse.Namespace) -> int:
    """Run a study, retrain the best config, save the bundle (and plots), print a summary."""
    from kit.commands import _data_config
    from kit.config import TrainConfig
    from kit.tune import DEFAULT_BASE, tune

    base = DEFAULT_BASE
    if args.epochs is not None or args.patience is not None:
        base = TrainConfig.from_dict({**DEFAULT_BASE.to_dict(), **{k: v for k, v in
                                      (("epochs", args.epochs), ("patience", args.patience)) if v is not None}})
    if args.device:
        base = base.replace(device=args.device)
    result = tune(_data_config(args), _space(args.space), n_trials=args.n_trials, timeout=args.timeout,
                  storage=args.storage or os.environ.get(STORAGE_ENV), study_name=args.study,
                  pruner=args.pruner, sampler=args.sampler, n_workers=args.workers, seed=args.seed,
                  config=base, metric=args.metric, run_dir=args.run_dir, heartbeat=args.heartbeat,
                  threads=args.threads)
    print(f"study {result.study.study_name} on {result.storage}: trials {result.counts()}")
    print(f"best trial {result.best_trial}: {result.metric}={result.best_value:.5f}")
    for name, value in result.best_params.items():
        print(f"  {name} = {value}")
    out = args.out or os.path.join(args.run_dir, result.study.study_name, "bundle")
    assert result.bundle is not None
    print(f"retrained bundle saved to {result.bundle.save(out)}")
    if args.plots:
        print(f"plots saved to {result.save_plots(args.plots)}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Join a study from this machine and run trials until its target count is reached."""
    from kit.config import DataConfig
    from kit.errors import ConfigError
    from kit.tune import redact, run_worker

    storage = args.storage or os.environ.get(STORAGE_ENV)
    if not storage:
        raise ConfigError(f"give --storage URL or set {STORAGE_ENV}", field="storage")
    dataset = None
    if args.data:
        from kit._study import open_study
        from kit._tune_storage import resolve
        from kit.data import load

        settings = open_study(resolve(storage), args.study, None, None)[1]
        dataset = load(DataConfig.from_dict({**settings["data"], "source": args.data}))
    ran = run_worker(storage, args.study, n_trials=args.n_trials, timeout=args.timeout, dataset=dataset,
                     worker=args.worker, threads=args.threads, heartbeat=args.heartbeat)
    print(f"this worker ran {ran} trials of study {args.study} on {redact(storage)}")
    return 0


def register(sub: Any) -> None:
    """Add ``tune`` and ``tune-worker`` to the ``kit`` command."""
    from kit.commands import add_data_args

    p = sub.add_parser("tune", help="tune hyperparameters with Optuna and retrain the best",
                       description="Run (or resume) an Optuna study, retrain the best config and save its "
                                   f"bundle. The storage may also come from ${STORAGE_ENV}.")
    add_data_args(p)
    p.add_argument("--n-trials", type=int, default=20, help="target count of finished trials (default 20)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--storage", help="SQLAlchemy URL, journal:PATH or *.db (default: <run-dir>/optuna.db)")
    p.add_argument("--study", help="study name (default kit-<data>-<metric>); the same name resumes")
    p.add_argument("--space", help="YAML/JSON file: parameter -> spec, e.g. lr: float(1e-4, 1e-2, log)")
    p.add_argument("--metric", help="validation metric to optimize (default log_loss / rmse)")
    p.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the storage")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--epochs", type=int, help="maximum epochs per trial (default 100)")
    p.add_argument("--patience", type=int, help="early-stopping patience per trial (default 15)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads per worker (small nets: try 1)")
    p.add_argument("--heartbeat", type=int, default=10, help="RDB heartbeat seconds (default 10)")
    p.add_argument("--run-dir", default="runs/tune", help="directory of the default SQLite storage")
    p.add_argument("--out", help="bundle directory (default <run-dir>/<study>/bundle)")
    p.add_argument("--plots", help="write the study's figures to this HTML file")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("tune-worker", help="join an existing study and run trials",
                       description="Join a study created by `kit tune` (its recipe is stored in the study) "
                                   f"and run trials until its target count is reached. ${STORAGE_ENV} may "
                                   "hold the storage URL.")
    p.add_argument("--storage", help=f"the study's storage URL (default ${STORAGE_ENV})")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--n-trials", type=int, help="override the study's target count")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--data", help="path of the study's data file on this machine, if it differs")
    p.add_argument("--worker", type=int, help="worker index, offsets the sampler seed (default: random)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--heartbeat", type=int, default=10, help="RDB heartbeat seconds (default 10)")
    p.set_defaults(func=cmd_worker)
