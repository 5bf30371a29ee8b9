"""The ``kit tune`` and ``kit tune-worker`` subcommands (thin layers over :mod:`kit.tune`).

The storage URL can come from ``--storage`` or the ``KIT_TUNE_STORAGE`` environment variable;
the environment keeps a database password out of the process list and the shell history.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from kit.cli._common import add_data_args, add_net_args, data_config, given, net_fields, read_mapping

STORAGE_ENV = "KIT_TUNE_STORAGE"


def cmd_tune(args: argparse.Namespace) -> int:
    """Run a study, retrain the best config, save the bundle (and plots), print a summary."""
    from kit.config import TrainConfig, TuneConfig
    from kit.tune import tune

    fields = given(args, n_trials="n_trials", timeout="timeout", study_name="study", metric="metric",
                   pruner="pruner", sampler="sampler", n_workers="workers", seed="seed", epochs="epochs",
                   patience="patience", run_dir="run_dir", heartbeat="heartbeat", threads="threads")
    config = TuneConfig(space=read_mapping(args.space, "search space"),
                        storage=args.storage or os.environ.get(STORAGE_ENV), **fields)
    base = {**({"device": args.device} if args.device else {}), **net_fields(args)}
    train = TrainConfig(epochs=100, patience=15, **base) if base else None
    result = tune(data_config(args), config, train=train)
    print(f"study {result.study.study_name} on {result.storage}: trials {result.counts()}")
    print(f"best trial {result.best_trial}: {result.metric}={result.best_value:.5f}")
    for name, value in result.best_params.items():
        print(f"  {name} = {value}")
    out = args.out or os.path.join(config.run_dir, result.study.study_name, "bundle")
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
        from kit._urls import resolve
        from kit.data import load
        from kit.tune._study import open_study

        settings = open_study(resolve(storage), args.study, None, None)[1]
        dataset = load(DataConfig.from_dict({**settings["data"], "source": args.data}))
    ran = run_worker(storage, args.study, n_trials=args.n_trials, timeout=args.timeout, dataset=dataset,
                     worker=args.worker, threads=args.threads, heartbeat=args.heartbeat)
    print(f"this worker ran {ran} trials of study {args.study} on {redact(storage)}")
    return 0


def register(sub: Any) -> None:
    """Add ``tune`` and ``tune-worker`` to the ``kit`` command."""
    p = sub.add_parser("tune", help="tune hyperparameters with Optuna and retrain the best",
                       description="Run (or resume) an Optuna study, retrain the best config and save its "
                                   f"bundle. The storage may also come from ${STORAGE_ENV}.")
    add_data_args(p)
    p.add_argument("--n-trials", type=int, help="target count of finished trials (default 20)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--storage", help="SQLAlchemy URL, journal:PATH or *.db (default: <run-dir>/optuna.db)")
    p.add_argument("--study", help="study name (default kit-<data>-<metric>); the same name resumes")
    p.add_argument("--space", help="YAML/JSON file: parameter -> spec, e.g. lr: float(1e-4, 1e-2, log); "
                                   "net.<param> searches a parameter of the network's builder")
    add_net_args(p)
    p.add_argument("--metric", help="validation metric to optimize (default log_loss / rmse)")
    p.add_argument("--pruner", choices=["median", "hyperband", "none"], help="default median")
    p.add_argument("--sampler", choices=["tpe", "random"], help="default tpe")
    p.add_argument("--workers", type=int, help="worker processes sharing the storage (default 1)")
    p.add_argument("--seed", type=int, help="sampler seed (default 0)")
    p.add_argument("--epochs", type=int, help="maximum epochs per trial (default 100)")
    p.add_argument("--patience", type=int, help="early-stopping patience per trial (default 15)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads per worker (small nets: try 1)")
    p.add_argument("--heartbeat", type=int, help="RDB heartbeat seconds (default 10)")
    p.add_argument("--run-dir", help="directory of the default SQLite storage (default runs/tune)")
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
