"""Tuning: Optuna studies with pruning, resumable and distributed on a real database.

``tune()`` searches TrainConfig hyperparameters with Optuna. Every trial trains on the same
splits; each epoch, the best validation value so far is reported to the pruner through a
training callback (``median``, ``hyperband`` or ``none``), so a pruned trial is recorded PRUNED,
not FAIL.

The study lives in a storage (see :mod:`kit._tune_storage`): a SQLite file under the run
directory by default, any SQLAlchemy URL (PostgreSQL for many machines) or a journal file.
``n_trials`` is the study's *target*: the number of finished (COMPLETE or PRUNED) trials.
Running again with the same study name resumes until the target is reached. The study stores
its own recipe (data, base config, space, metric, pruner, sampler) as the user attribute
``kit``, so ``kit tune-worker --storage URL --study NAME`` can join from another machine.

Example::

    from kit.tune import tune
    result = tune("breast_cancer", n_trials=30, study_name="bc")
    result.bundle.save("runs/bc-tuned"); result.save_plots("reports/bc-tuning.html")
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit import metrics as km
from kit._space import DEFAULT_SPACE, Space
from kit._study import ATTR, PRUNERS, SAMPLERS, Setup, finished, load_data, open_study, states, work
from kit._tune_storage import redact, resolve
from kit.config import DataConfig, TrainConfig
from kit.data import Dataset
from kit.errors import ConfigError, KitError, require

if TYPE_CHECKING:
    import optuna

    from kit.bundle import ModelBundle

__all__ = ["DEFAULT_BASE", "DEFAULT_SPACE", "PRUNERS", "SAMPLERS", "Space", "TuneResult", "create_study",
           "plots", "redact", "run_worker", "save_plots", "tune"]

log = logging.getLogger(__name__)

DEFAULT_BASE = TrainConfig(epochs=100, patience=15)
"""The config trials start from when none is given (the space overrides some fields)."""


def create_study(
    data: Dataset | DataConfig | str = "breast_cancer",
    space: Mapping[str, Any] | None = None,
    *,
    n_trials: int = 20,
    storage: str | None = None,
    study_name: str | None = None,
    config: TrainConfig | None = None,
    metric: str | None = None,
    pruner: str = "median",
    sampler: str = "tpe",
    seed: int | None = 0,
    run_dir: str | Path = "runs/tune",
    heartbeat: int | None = 10,
) -> optuna.Study:
    """Create (or load, checking it matches) a study and store its recipe, without running trials.

    Arguments are those of :func:`tune`. Workers (``kit tune-worker``) can then join it.

    Returns:
        The Optuna study.
    """
    return _prepare(**{k: v for k, v in locals().items()})[0]


def _prepare(data: Dataset | DataConfig | str, space: Mapping[str, Any] | None, *, n_trials: int,
             storage: str | None, study_name: str | None, config: TrainConfig | None, metric: str | None,
             pruner: str, sampler: str, seed: int | None, run_dir: str | Path,
             heartbeat: int | None) -> tuple[optuna.Study, Setup, str]:
    from kit.train import _monitor

    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials <= 0:
        raise ConfigError(f"n_trials must be a positive integer, but got {n_trials=}", field="n_trials")
    if pruner not in PRUNERS:
        raise ConfigError(f"pruner must be one of {PRUNERS}, but got {pruner=}", field="pruner")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, but got {sampler=}", field="sampler")
    if heartbeat is not None and heartbeat <= 0:
        raise ConfigError(f"heartbeat must be a positive number of seconds, but got {heartbeat=}",
                          field="heartbeat")
    base = (config or DEFAULT_BASE).replace(monitor=metric) if metric else (config or DEFAULT_BASE)
    the_space = Space(space, base)  # validated before anything touches the storage or the data
    spec = resolve(storage, run_dir)
    dataset, data_config = load_data(data)
    metric = _monitor(base, dataset.task)
    study_name = study_name or f"kit-{dataset.name}-{metric}"
    settings = {"metric": metric, "direction": "maximize" if km.HIGHER_IS_BETTER[metric] else "minimize",
                "space": the_space.to_dict(), "train": base.to_dict(), "data": data_config.to_dict(),
                "data_hash": dataset.data_hash, "pruner": pruner, "sampler": sampler, "seed": seed,
                "n_trials": n_trials}
    study, settings = open_study(spec, study_name, heartbeat, settings)
    splits = dataset.split(data_config.valid_size, data_config.test_size, data_config.seed)
    return study, Setup(dataset, data_config, splits, the_space, settings), spec


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

    def summary(self) -> dict[str, Any]:
        """The ``tuning`` section stored in the retrained bundle."""
        settings = self.study.user_attrs.get(ATTR, {})
        return {"study_name": self.study.study_name, "storage": self.storage, "metric": self.metric,
                "direction": self.direction, "n_trials": self.counts(), "target": settings.get("n_trials"),
                "best_trial": self.best_trial, "best_value": self.best_value, "params": self.best_params,
                "pruner": settings.get("pruner"), "sampler": settings.get("sampler"),
                "seed": settings.get("seed"), "space": settings.get("space")}

    def plots(self) -> dict[str, Any]:
        """Plotly figures of the study (see :func:`plots`)."""
        return plots(self.study)

    def save_plots(self, path: str | os.PathLike[str]) -> Path:
        """Write every figure into one self-contained HTML file (see :func:`save_plots`)."""
        return save_plots(self.study, path)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return dict(sorted(out.items()))


def tune(
    data: Dataset | DataConfig | str = "breast_cancer",
    space: Mapping[str, Any] | None = None,
    *,
    n_trials: int = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: str = "median",
    sampler: str = "tpe",
    n_workers: int = 1,
    seed: int | None = 0,
    config: TrainConfig | None = None,
    metric: str | None = None,
    run_dir: str | Path = "runs/tune",
    heartbeat: int | None = 10,
    threads: int | None = None,
    retrain: bool = True,
) -> TuneResult:
    """Search hyperparameters, then retrain the best config into a bundle.

    Args:
        data: A Dataset, DataConfig or built-in name; every trial uses the same splits.
        space: Parameter specs (see :mod:`kit._space`); ``None`` for :data:`DEFAULT_SPACE`.
        n_trials: Target number of finished (COMPLETE or PRUNED) trials in the study; a re-run
            with the same study name resumes until the target is reached.
        timeout: Stop starting new trials after this many seconds.
        storage: ``None`` (SQLite file under ``run_dir``), an SQLAlchemy URL, ``journal:PATH``.
        study_name: Defaults to ``kit-<data>-<metric>``.
        pruner: ``median``, ``hyperband`` or ``none``.
        sampler: ``tpe`` or ``random``.
        n_workers: Processes sharing the storage (this one plus ``n_workers - 1`` spawned).
        seed: Sampler seed (worker ``i`` uses ``seed + i``); same seed, one worker → same trials.
        config: The base TrainConfig (defaults to :data:`DEFAULT_BASE`).
        metric: Validation metric to optimize; defaults to the config's monitor (log loss / RMSE).
        run_dir: Directory of the default SQLite file.
        heartbeat: RDB heartbeat interval in seconds (a killed worker's trial is retried after
            about twice that); ``None`` disables.
        threads: Torch CPU threads per worker (default: torch's own for one worker,
            ``cpu_count // n_workers`` for several). Small networks often train fastest with 1.
        retrain: Retrain the best config into :attr:`TuneResult.bundle`.

    Returns:
        The study, the best config and value, and the retrained bundle.

    Raises:
        ConfigError: Bad space, ``n_trials <= 0``, unknown pruner or sampler, an unreachable
            storage, or an existing study with another metric, direction, space or data.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, but got {threads=}", field="threads")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be positive seconds, but got {timeout=}", field="timeout")
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"n_workers must be >= 1, but got {n_workers=}", field="n_workers")
    study, setup, spec = _prepare(data, space, n_trials=n_trials, storage=storage, study_name=study_name,
                                  config=config, metric=metric, pruner=pruner, sampler=sampler, seed=seed,
                                  run_dir=run_dir, heartbeat=heartbeat)
    deadline = None if timeout is None else time.time() + timeout
    log.info("study %s on %s: target %d trials, %d finished", study.study_name, redact(spec), n_trials,
             finished(study))
    if spec.startswith("sqlite") and spec.endswith(":memory:") and n_workers > 1:
        raise ConfigError("an in-memory SQLite storage cannot be shared by workers", field="storage")
    _run_workers(study, setup, spec, n_trials, deadline, n_workers, heartbeat, threads)
    return _result(study, setup, spec, retrain)


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


def _result(study: optuna.Study, setup: Setup, spec: str, retrain: bool) -> TuneResult:
    from kit.train import train

    completed = study.get_trials(deepcopy=False, states=states("COMPLETE"))
    if not completed:
        raise KitError(f"no trial of study {study.study_name!r} completed (states: {trial_counts(study)}); "
                       "raise n_trials or timeout, or use pruner='none'")
    best = study.best_trial
    result = TuneResult(study, setup.config_for(best.params), dict(best.params), float(best.value),  # type: ignore[arg-type]
                        best.number, setup.settings["metric"], setup.settings["direction"], redact(spec))
    if retrain:
        bundle = train(setup.dataset, result.best_config, data_config=setup.data_config,
                       splits=setup.splits).bundle
        bundle.lineage.update({"study_name": study.study_name, "study_storage": result.storage,
                               "trial_number": best.number, "best_params": result.best_params})
        result.bundle = bundle.with_section("tuning", result.summary())
    return result


def plots(study: optuna.Study) -> dict[str, Any]:
    """Optuna's plotly figures: ``history``, ``importances``, ``parallel``, ``intermediate``.

    Parameter importances need at least two completed trials with varying parameters; the
    figure is left out (and logged) when the study has too few.
    """
    require("plotly", "tune")
    optuna = require("optuna", "tune")
    vis = optuna.visualization
    figs: dict[str, Any] = {"history": vis.plot_optimization_history(study)}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        figs["importances"] = vis.plot_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        log.info("no parameter importances for study %s: %s", study.study_name, exc)
    figs["parallel"] = vis.plot_parallel_coordinate(study)
    figs["intermediate"] = vis.plot_intermediate_values(study)
    return figs


def save_plots(study: optuna.Study, path: str | os.PathLike[str]) -> Path:
    """Write every figure of :func:`plots` into one self-contained HTML report (plotly.js inlined once).

    Returns:
        The written path.
    """
    figs = plots(study)
    parts = [f"<h2>{name}</h2>" + fig.to_html(full_html=False, include_plotlyjs=(i == 0))
             for i, (name, fig) in enumerate(figs.items())]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{study.study_name}</title></head>"
                   f"<body><h1>Study {study.study_name}</h1>{''.join(parts)}</body></html>", encoding="utf-8")
    return out


def register_cli(sub: Any) -> None:
    """Add ``tune`` and ``tune-worker`` to the ``kit`` command."""
    from kit._tune_cli import register

    register(sub)
