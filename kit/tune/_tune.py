"""``tune()``, ``create_study()`` and ``run_worker()``: the study from start to the retrained bundle."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit import metrics as km
from kit._urls import redact, resolve
from kit.config import TrainConfig, TuneConfig
from kit.errors import ConfigError, KitError, require
from kit.sections import TuningSection
from kit.tune._space import Space
from kit.tune._study import ATTR, Setup, finished, open_study, states, work

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle
    from kit.data import DataLike, Dataset

log = logging.getLogger(__name__)

def create_study(data: DataLike = "breast_cancer", config: TuneConfig | None = None, *,
                 train: TrainConfig | None = None, **fields: Any) -> optuna.Study:
    """Create (or load, checking it matches) a study and store its recipe, without running trials.

    Arguments are those of :func:`tune`. Workers (``kit tune-worker``) can then join it.

    Returns:
        The Optuna study.
    """
    return _prepare(data, TuneConfig.resolve(config, fields), train)[0]


def _prepare(data: DataLike, config: TuneConfig, train: TrainConfig | None) -> tuple[optuna.Study, Setup, str]:
    from kit.data import resolve as resolve_data
    from kit.train import _monitor

    base = config.base(train)
    the_space = Space(config.space, base)  # validated before anything touches the storage or the data
    spec = resolve(config.storage, config.run_dir)
    dataset, data_config = resolve_data(data)
    metric = _monitor(base, dataset.task)
    if metric == "valid_loss":  # trials with other label smoothing have other losses: compare plain metrics
        metric = "log_loss" if dataset.task != "regression" else "rmse"
        base = base.replace(monitor=metric)
        the_space = Space(config.space, base)
    study_name = config.study_name or f"kit-{dataset.name}-{metric}"
    settings = {"metric": metric, "direction": "maximize" if km.HIGHER_IS_BETTER[metric] else "minimize",
                "space": the_space.to_dict(), "train": base.to_dict(), "data": data_config.to_dict(),
                "data_hash": dataset.data_hash, "pruner": config.pruner, "sampler": config.sampler,
                "seed": config.seed, "n_trials": config.n_trials}
    splits = dataset.split(data_config.valid_size, data_config.test_size, data_config.seed)
    _check_network(the_space, base, dataset, splits, data_config, config.n_workers)
    study, settings = open_study(spec, study_name, config.heartbeat, settings)
    return study, Setup(dataset, data_config, splits, the_space, settings), spec


def _check_network(space: Space, base: TrainConfig, dataset: Dataset, splits: Any, data_config: Any,
                   n_workers: int) -> None:
    """Build the base network and every ``net.*`` bound on this data's shapes, before any trial runs."""
    from kit import nets
    from kit.data import preprocessor_for

    if space.builder.registered and not space.builder.builtin and n_workers > 1:
        raise ConfigError(f"network {base.net!r} is registered in this process only, so spawned workers cannot "
                          "build it; give TrainConfig.net as an import path 'module:function' for n_workers > 1",
                          field="net")
    n_in = preprocessor_for(dataset, data_config).fit(splits.train.X).network_input
    n_out = 1 if dataset.task == "regression" else len(dataset.label_names or [])
    params, origin = nets.config_params(base)
    nets.check_params(space.builder, params, origin)
    nets.call(space.builder, n_in, n_out, params, origin)
    space.check_network(n_in, n_out)


@dataclass
class TuneResult:
    """What :func:`tune` returns.

    Attributes:
        study: The Optuna study (readable by stock Optuna tools and optuna-dashboard).
        best_config: The best trial's TrainConfig.
        best_params: The best trial's searched parameters.
        best_value: Its validation ``metric`` value.
        best_trial: Its trial number.
        metric: The optimized validation metric.
        direction: ``minimize`` or ``maximize``.
        storage: The storage spec with the password redacted.
        bundle: The best config retrained on the same splits (``None`` with ``retrain=False``).
    """

    study: optuna.Study = field(repr=False)
    best_config: TrainConfig
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    metric: str
    direction: str
    storage: str
    bundle: ModelBundle | None = field(default=None, repr=False)

    def counts(self) -> dict[str, int]:
        """Number of trials per state name (COMPLETE, PRUNED, FAIL, ...)."""
        return trial_counts(self.study)

    def summary(self) -> TuningSection:
        """The ``tuning`` section stored in the retrained bundle."""
        settings = self.study.user_attrs.get(ATTR, {})
        return TuningSection(study_name=self.study.study_name, storage=self.storage, metric=self.metric,
                             direction=self.direction, n_trials=self.counts(), target=settings.get("n_trials"),
                             best_trial=self.best_trial, best_value=self.best_value, params=self.best_params,
                             pruner=settings.get("pruner"), sampler=settings.get("sampler"),
                             seed=settings.get("seed"), space=settings.get("space"),
                             config={"train": settings.get("train"), "data": settings.get("data")})

    def plots(self) -> dict[str, Any]:
        """Plotly figures of the study (see :func:`kit.tune.plots`)."""
        from kit.tune._plots import plots

        return plots(self.study)

    def plot_trials(self) -> Figure:
        """Every trial, completed and pruned, as a matplotlib figure (see :func:`kit.tune.plot_trials`)."""
        from kit.tune._plots import plot_trials

        return plot_trials(self.study, self.metric)

    def importances(self) -> dict[str, float]:
        """How much each searched parameter explains the results (see :func:`kit.tune.importances`)."""
        from kit.tune._plots import importances

        return importances(self.study)

    def save_plots(self, path: str | os.PathLike[str]) -> Path:
        """Write every figure into one self-contained HTML file (see :func:`kit.tune.save_plots`)."""
        from kit.tune._plots import save_plots

        return save_plots(self.study, path)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return dict(sorted(out.items()))


def tune(data: DataLike = "breast_cancer", config: TuneConfig | None = None, *,
         train: TrainConfig | None = None, **fields: Any) -> TuneResult:
    """Search hyperparameters, then retrain the best config into a bundle.

    Args:
        data: A Dataset, DataConfig, built-in name, file path or DataFrame; every trial uses the
            same splits.
        config: The search settings (trials, space, storage, pruner, ...); see
            :class:`~kit.config.TuneConfig`.
        train: The TrainConfig trials start from (the space overrides some fields); default 100
            epochs with patience 15.
        **fields: Shorthands for ``config`` fields, e.g. ``tune(ds, n_trials=30, storage=url)``.

    Returns:
        The study, the best config and value, and the retrained bundle.

    Raises:
        ConfigError: Bad space or settings, an unreachable storage, or an existing study with
            another metric, direction, space or data.
    """
    config = TuneConfig.resolve(config, fields)
    study, setup, spec = _prepare(data, config, train)
    deadline = None if config.timeout is None else time.time() + config.timeout
    log.info("study %s on %s: target %d trials, %d finished", study.study_name, redact(spec), config.n_trials,
             finished(study))
    if spec.startswith("sqlite") and spec.endswith(":memory:") and config.n_workers > 1:
        raise ConfigError("an in-memory SQLite storage cannot be shared by workers", field="storage")
    _run_workers(study, setup, spec, config.n_trials, deadline, config.n_workers, config.heartbeat, config.threads)
    return _result(study, setup, spec, config)


def _run_workers(study: optuna.Study, setup: Setup, spec: str, target: int, deadline: float | None,
                 n_workers: int, heartbeat: int | None, threads: int | None) -> None:
    """Run this process as worker 0 and ``n_workers - 1`` spawned processes on the same study."""
    import multiprocessing as mp

    torch = require("torch", "train")
    saved = torch.get_num_threads()
    procs = []
    per = threads or (max(1, (os.cpu_count() or 1) // n_workers) if n_workers > 1 else None)
    if per:
        torch.set_num_threads(per)
    if n_workers > 1:
        ctx = mp.get_context("spawn")
        start = ctx.Barrier(n_workers)  # every worker starts trials once all have loaded torch and the data
        for i in range(1, n_workers):
            p = ctx.Process(target=_spawned, args=(spec, study.study_name, target, deadline, setup.dataset, i,
                                                   per, heartbeat, start), name=f"kit-tune-worker-{i}")
            p.start()
            procs.append(p)
        _wait(start)
    try:
        work(study, setup, target, deadline)
    finally:
        for p in procs:
            p.join()
        torch.set_num_threads(saved)
    bad = [(p.name, p.exitcode) for p in procs if p.exitcode]
    if bad and finished(study) < target and (deadline is None or time.time() < deadline):
        raise KitError(f"tuning workers failed before the target was reached: {bad}")


def _wait(barrier: Any, limit: float = 300.0) -> None:
    """Wait for the other workers to be ready; go on alone if one never comes."""
    import threading

    try:
        barrier.wait(limit)
    except threading.BrokenBarrierError:
        log.warning("not every tuning worker started; going on with those that did")


def _spawned(spec: str, study_name: str, target: int, deadline: float | None, dataset: Dataset, worker: int,
             threads: int, heartbeat: int | None, start: Any = None) -> None:
    """Entry point of a spawned worker process."""
    import sys

    try:
        run_worker(spec, study_name, n_trials=target, deadline=deadline, dataset=dataset, worker=worker,
                   threads=threads, heartbeat=heartbeat, _ready=start)
    except KitError as exc:
        print(f"kit tune worker {worker}: error: {exc.message}", file=sys.stderr)
        sys.exit(2)


def run_worker(storage: str, study_name: str, *, n_trials: int | None = None, timeout: float | None = None,
               deadline: float | None = None, dataset: Dataset | None = None, worker: int | None = None,
               threads: int | None = None, heartbeat: int | None = 10, _ready: Any = None) -> int:
    """Join an existing study and run trials until its target count is reached.

    Args:
        storage: The study's storage (same forms as :func:`tune`).
        study_name: The study to join; it must have been created by kit (it holds its recipe).
        n_trials: Override the study's stored target count.
        timeout: Stop starting trials after this many seconds.
        deadline: Absolute ``time.time()`` after which no trial starts (used by :func:`tune`).
        dataset: The data (default: load the source recorded in the study; its hash must match).
        worker: Worker index, added to the sampler seed so workers do not repeat each other
            (``None``: a random index, so independent machines never share a seed).
        threads: Torch CPU threads for this process.
        heartbeat: RDB heartbeat interval in seconds.

    Returns:
        How many trials this worker ran.
    """
    import secrets

    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials <= 0):
        raise ConfigError(f"n_trials must be a positive integer, but got {n_trials=}", field="n_trials")
    worker = 1 + secrets.randbelow(2**20) if worker is None else worker
    spec = resolve(storage)
    study, settings = open_study(spec, study_name, heartbeat, None, worker)
    setup = Setup.from_settings(settings, dataset)
    if threads:
        require("torch", "train").set_num_threads(threads)
    if timeout is not None:
        deadline = min(deadline or math.inf, time.time() + timeout)
    target = n_trials or int(settings["n_trials"])
    if _ready is not None:
        _wait(_ready)
    return work(study, setup, target, deadline)


def _result(study: optuna.Study, setup: Setup, spec: str, config: TuneConfig) -> TuneResult:
    from kit.train import train

    completed = study.get_trials(deepcopy=False, states=states("COMPLETE"))
    if not completed:
        raise KitError(f"no trial of study {study.study_name!r} completed (states: {trial_counts(study)}); "
                       "raise n_trials or timeout, or use pruner='none'")
    best = study.best_trial
    result = TuneResult(study, setup.config_for(best.params), dict(best.params), float(best.value),  # type: ignore[arg-type]
                        best.number, setup.settings["metric"], setup.settings["direction"], redact(spec))
    if config.retrain:
        bundle = train(setup.dataset, result.best_config, data_config=setup.data_config,
                       splits=setup.splits).bundle  # with the baselines on the same split
        bundle.lineage.update({"study_name": study.study_name, "study_storage": result.storage,
                               "trial_number": best.number, "best_params": result.best_params})
        bundle.configs["tune"] = config.replace(storage=result.storage).to_dict()
        result.bundle = bundle.with_section(result.summary())
    return result
