"""Study internals of :mod:`kit.tune`: recipe, open and check, objective, worker loop.

The objective reports every epoch to the pruner through a training callback; the worker loop
stops at the study's target count.

A study's recipe (data, base config, space, metric, pruner, sampler, seed, target) is stored as
the user attribute ``kit``; it holds no credentials. Counting: a trial counts toward the target
when COMPLETE, PRUNED, RUNNING or WAITING (a retried trial replaces its FAIL original). Each worker
checks the count before starting a trial and, in the rare race where two workers take the last
slot at once, the later one (by trial number) stops at once and is recorded FAIL with the user
attribute ``kit_surplus`` instead of overshooting the target.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from kit._urls import redact, scrub
from kit.config import DataConfig, TrainConfig
from kit.data import Dataset, Splits, load
from kit.errors import ConfigError, DataError, KitError, require
from kit.train import Callback, EpochState
from kit.tune._space import Space
from kit.tune._storage import open_storage

if TYPE_CHECKING:
    import optuna

ATTR = "kit"
"""Study user attribute holding the recipe every worker rebuilds (no credentials in it)."""


class _SurplusTrial(Exception):
    """A trial started after the target was reached by other workers; recorded FAIL, not counted."""


def states(*names: str) -> tuple[Any, ...]:
    optuna = require("optuna", "tune")
    return tuple(getattr(optuna.trial.TrialState, n) for n in names)


def _sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    opt = require("optuna", "tune")
    cls = opt.samplers.RandomSampler if name == "random" else opt.samplers.TPESampler
    sampler: optuna.samplers.BaseSampler = cls(seed=seed)
    return sampler


SNAPSHOT_REFRESH_S = 5.0
"""Seconds a worker's snapshot of the study's COMPLETE trials serves the median pruner before it is re-read."""


class _StudyView:
    """A study whose ``get_trials(states=(COMPLETE,))`` answers from a snapshot; all else goes to the study."""

    def __init__(self, study: optuna.Study, complete: list[optuna.trial.FrozenTrial]) -> None:
        self._study, self._complete = study, complete

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        optuna = require("optuna", "tune")
        if states is not None and tuple(states) == (optuna.trial.TrialState.COMPLETE,):
            return [copy.deepcopy(t) for t in self._complete] if deepcopy else list(self._complete)
        return self._study.get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _snapshot_pruner(inner: optuna.pruners.BasePruner) -> optuna.pruners.BasePruner:
    """Wrap a percentile/median pruner so that it reads the study's COMPLETE trials once per trial.

    Optuna's pruners re-read every finished trial from the storage on each ``should_prune``: on a
    SQLite study that query took 8 ms, close to a small network's 12 ms training epoch. COMPLETE trials never
    change, so the wrapper keeps a snapshot, re-read when a new trial asks and every
    :data:`SNAPSHOT_REFRESH_S` seconds (other workers finish trials meanwhile). With one worker the
    decisions are exactly Optuna's.
    """
    opt = require("optuna", "tune")
    complete = (opt.trial.TrialState.COMPLETE,)

    class SnapshotPruner(opt.pruners.BasePruner):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.inner = inner
            self._key: tuple[int, int] | None = None
            self._complete: list[optuna.trial.FrozenTrial] = []
            self._at = -math.inf

        def prime(self, study: optuna.Study, number: int, trials: list[optuna.trial.FrozenTrial]) -> None:
            """Take the snapshot for trial ``number`` from trials the caller has just read."""
            self._complete = [t for t in trials if t.state == complete[0]]
            self._key, self._at = (id(study), number), time.monotonic()

        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            if (id(study), trial.number) != self._key or time.monotonic() - self._at > SNAPSHOT_REFRESH_S:
                self.prime(study, trial.number, study.get_trials(deepcopy=False, states=complete))
            return bool(self.inner.prune(cast("optuna.Study", _StudyView(study, self._complete)), trial))

    return SnapshotPruner()


def _pruner(name: str, train: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """The study's pruner for the base TrainConfig ``train`` (a dict).

    ``median`` judges a trial from the end of its learning-rate warm-up (``warmup_epochs``, at
    least one epoch): earlier, every trial is still ramping up and comparisons say little.
    """
    opt = require("optuna", "tune")
    epochs = int(train["epochs"])
    pruner: optuna.pruners.BasePruner = opt.pruners.NopPruner()
    if name == "median":
        warmup = max(1, min(int(train.get("warmup_epochs") or 1), epochs - 1))
        pruner = _snapshot_pruner(opt.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup))
    elif name == "hyperband":  # not wrapped: TPE samples per bracket only when study.pruner is a HyperbandPruner
        pruner = opt.pruners.HyperbandPruner(min_resource=max(1, epochs // 30), max_resource=epochs,
                                                reduction_factor=3)
    return pruner


@dataclass
class Setup:
    """Everything a worker needs to run trials of one study."""

    dataset: Dataset
    data_config: DataConfig
    splits: Splits
    space: Space
    settings: dict[str, Any]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], dataset: Dataset | None = None) -> Setup:
        data_config = DataConfig.from_dict(settings["data"])
        if dataset is None:
            if data_config.source == "dataframe":
                raise DataError("this study was created from an in-memory DataFrame; give the worker the same "
                                "data as a file (kit tune-worker --data PATH)", field="data")
            dataset = load(data_config)
        if dataset.data_hash != settings["data_hash"]:
            raise DataError(f"data {dataset.name!r} differs from the data this study was created with "
                            f"(hash {dataset.data_hash[:12]} != {settings['data_hash'][:12]})", field="data")
        space = Space(settings["space"], TrainConfig.from_dict(settings["train"]))
        splits = dataset.split(data_config.valid_size, data_config.test_size, data_config.seed)
        return cls(dataset, data_config, splits, space, dict(settings))

    def config_for(self, params: Mapping[str, Any]) -> TrainConfig:
        """The TrainConfig of a trial's params (fixed space values included)."""
        fixed = {n: p.choices[0] for n, p in self.space.params.items() if p.kind == "fixed"}
        return self.space.to_config({**fixed, **params})


class _Pruning(Callback):
    """Reports each epoch's best validation value so far; raises TrialPruned when told to.

    The best so far is what the trial returns if it stops now (training keeps the best epoch's
    weights), so the pruner compares trials by what each would deliver, not by a noisy or
    overfitting last epoch.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.best = math.nan

    def on_epoch_end(self, state: EpochState) -> bool | None:
        optuna = require("optuna", "tune")
        self.best = state.best_value
        if not math.isfinite(state.value):
            raise optuna.TrialPruned(f"{state.monitor} is {state.value} at epoch {state.epoch}")
        self.trial.report(state.best_value, state.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {state.epoch} ({state.monitor}={state.value:.4f})")
        return None


class _Objective:
    def __init__(self, setup: Setup, target: int) -> None:
        self.setup, self.target = setup, target

    def __call__(self, trial: optuna.Trial) -> float:
        from kit.train import train

        counted = states("COMPLETE", "PRUNED", "RUNNING", "WAITING")
        trials = trial.study.get_trials(deepcopy=False, states=counted)
        ahead = sum(t.number < trial.number for t in trials)
        if ahead >= self.target:  # another worker filled the last slot between our check and this trial
            trial.set_user_attr("kit_surplus", True)
            raise _SurplusTrial(f"target of {self.target} trials already reached")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if hasattr(trial.study.pruner, "prime"):  # the median pruner's snapshot, from the trials just read
            trial.study.pruner.prime(trial.study, trial.number, trials)
        config = self.setup.config_for(self.setup.space.suggest(trial))
        pruning = _Pruning(trial)
        result = train(self.setup.dataset, config, data_config=self.setup.data_config,
                       splits=self.setup.splits, callbacks=[pruning], baselines=False)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", len(result.history))
        return pruning.best


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=states("COMPLETE", "PRUNED")))


def work(study: optuna.Study, setup: Setup, target: int, deadline: float | None) -> int:
    """Run trials until the study holds ``target`` counted trials or the deadline passes."""
    optuna = require("optuna", "tune")
    objective, ran = _Objective(setup, target), 0
    counted = states("COMPLETE", "PRUNED", "RUNNING", "WAITING")
    while deadline is None or time.time() < deadline:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flagged experimental; a no-op without heartbeats
            optuna.storages.fail_stale_trials(study)
        if len(study.get_trials(deepcopy=False, states=counted)) >= target:
            break
        study.optimize(objective, n_trials=1, catch=(_SurplusTrial, RuntimeError, FloatingPointError))
        ran += 1
    return ran


def open_study(spec: str, study_name: str, heartbeat: int | None, settings: Mapping[str, Any] | None,
          worker: int = 0) -> tuple[optuna.Study, dict[str, Any]]:
    """Create or load the study; check or store its recipe; set this worker's sampler and pruner."""
    optuna = require("optuna", "tune")
    storage = open_storage(spec, heartbeat)
    try:
        if settings is None:
            study = optuna.load_study(study_name=study_name, storage=storage)
        else:
            direction = settings["direction"]
            study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                        load_if_exists=True)
    except KeyError:
        raise ConfigError(f"no study named {study_name!r} in {redact(spec)}", field="study_name") from None
    except Exception as exc:
        if isinstance(exc, KitError):
            raise
        raise ConfigError(f"cannot open study {study_name!r} in {redact(spec)}: {scrub(str(exc), spec)}",
                          field="storage") from None
    stored = study.user_attrs.get(ATTR)
    if settings is None:
        if stored is None:
            raise ConfigError(f"study {study_name!r} was not created by kit (no {ATTR!r} user attribute)",
                              field="study_name")
        settings = stored
    else:
        _check_same(study, study_name, stored, settings)
        study.set_user_attr(ATTR, {**(stored or {}), **settings})
    seed = settings["seed"]
    study.sampler = _sampler(settings["sampler"], None if seed is None else seed + worker)
    study.pruner = _pruner(settings["pruner"], settings["train"])
    return study, dict(settings)


def _check_same(study: optuna.Study, name: str, stored: Mapping[str, Any] | None,
                settings: Mapping[str, Any]) -> None:
    want = settings["direction"]
    have = study.direction.name.lower()
    if stored is None and have != want:
        raise ConfigError(f"study {name!r} exists and is set to {have}, but metric {settings['metric']!r} "
                          f"needs {want}; use another study name", field="metric")
    if stored is None:
        return
    if (stored["metric"], stored["direction"]) != (settings["metric"], want):
        raise ConfigError(f"study {name!r} exists with metric {stored['metric']!r} ({stored['direction']}), "
                          f"not {settings['metric']!r} ({want}); use another study name", field="metric")
    if stored["data_hash"] != settings["data_hash"]:
        raise DataError(f"study {name!r} exists for other data ({stored['data']['source']!r}); use another "
                        "study name", field="data")
    for key, what in (("space", "search space"), ("train", "base TrainConfig")):
        if stored[key] != settings[key]:
            raise ConfigError(f"study {name!r} exists with another {what}; resume it unchanged or use another "
                              "study name", field="space" if key == "space" else "config")
