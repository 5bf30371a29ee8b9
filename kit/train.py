"""The training loop: one explicit, readable loop with callbacks.

``train()`` fits the preprocessor on the train split, builds the network its config names (see
:mod:`kit.nets`; every builder check runs before the first epoch), trains it with AdamW, a warm-up +
cosine learning-rate schedule, label smoothing and early stopping on a validation metric (restoring
the best weights), evaluates on the test split, fits the baselines a data scientist tries first
(:mod:`kit.baselines`) on the same split, and returns a :class:`~kit.bundle.ModelBundle`.

Callbacks observe every epoch; ``on_epoch_end`` returning ``True`` asks the loop to stop
(a widget's Stop button). Raising from a callback aborts the run (Optuna pruning).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit import metrics as km
from kit.config import DataConfig, TrainConfig
from kit.data import DataLike, Dataset, ImageDataset, Splits, preprocessor_for, resolve
from kit.errors import ConfigError, require

if TYPE_CHECKING:
    from torch import nn

    from kit.bundle import ModelBundle
    from kit.sections import BaselinesSection


BASELINE_MAX_INPUTS = 4096
"""Baselines are fitted when the network's input has at most this many values per row (tables; images up to 64x64)."""


@dataclass
class EpochState:
    """What a callback sees after each epoch.

    Attributes:
        epoch: 1-based epoch number.
        epochs: Maximum epochs.
        train_loss: Mean training loss over the epoch.
        valid_loss: Validation loss.
        monitor: Name of the monitored validation metric.
        value: Its value this epoch.
        best_value: Best value so far.
        best_epoch: Epoch of the best value.
        lr: Learning rate at the end of the epoch.
        elapsed: Seconds since training started.
        metrics: Other validation metrics recorded for plots (``accuracy`` for classifiers).
    """

    epoch: int
    epochs: int
    train_loss: float
    valid_loss: float
    monitor: str
    value: float
    best_value: float
    best_epoch: int
    lr: float
    elapsed: float
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The numbers of this epoch (a row of the training history)."""
        monitored = {} if self.monitor == "valid_loss" else {self.monitor: self.value}
        return {"epoch": self.epoch, "train_loss": self.train_loss, "valid_loss": self.valid_loss, **monitored,
                **self.metrics, "lr": self.lr, "elapsed": self.elapsed}


class Callback:
    """Hooks into :func:`train`. Override what you need; every hook is optional."""

    def on_train_begin(self, config: TrainConfig, n_train: int) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, state: EpochState) -> bool | None:
        """Called after each epoch; return ``True`` to stop training now."""
        return None

    def on_train_end(self, history: list[dict[str, float]]) -> None:
        """Called once after the last epoch (also after an early or requested stop)."""


class TqdmCallback(Callback):
    """A ``tqdm.auto`` progress bar (a widget in notebooks, text elsewhere)."""

    def __init__(self, desc: str = "train") -> None:
        self.desc = desc
        self.bar: Any = None

    def on_train_begin(self, config: TrainConfig, n_train: int) -> None:
        """Open the bar."""
        from tqdm.auto import tqdm

        self.bar = tqdm(total=config.epochs, desc=self.desc, unit="epoch", leave=False)

    def on_epoch_end(self, state: EpochState) -> bool | None:
        """Advance the bar and show the losses."""
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{state.train_loss:.4f}", **{state.monitor: f"{state.value:.4f}"})
        return None

    def on_train_end(self, history: list[dict[str, float]]) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        bundle: The trained, self-describing model (preprocessor, weights, metrics, lineage).
        module: The trained torch module (best weights restored).
        history: One dict per epoch.
        best_epoch: Epoch whose weights were kept.
        stopped: ``"completed"``, ``"early_stopping"`` or ``"callback"``.
        splits: The data splits used.
    """

    bundle: ModelBundle
    module: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    stopped: str
    splits: Splits = field(repr=False)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Valid and test metrics."""
        return self.bundle.metrics

    @property
    def baselines(self) -> BaselinesSection | None:
        """The baselines fitted on the same split (``None`` when ``train(baselines=False)``)."""
        return self.bundle.baselines


def pick_device(requested: str = "auto") -> str:
    """CUDA when present (and asked for or ``auto``), else CPU."""
    torch = require("torch", "train")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device is cuda but no CUDA device is available", field="device")
    return requested


def lr_at(step: int, total: int, warmup: int, config: TrainConfig) -> float:
    """Learning rate at optimizer ``step`` (pure function of the schedule)."""
    if config.scheduler == "constant":
        return config.lr
    if config.scheduler == "onecycle":
        warmup = max(1, int(0.3 * total))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _monitor(config: TrainConfig, task: str) -> str:
    """The validation metric that early stopping watches.

    ``auto`` is RMSE for regression and, for classifiers, ``valid_loss``: the training objective
    (cross-entropy with the config's label smoothing) on the validation split. With label smoothing
    it picks better epochs than the plain log loss, which rewards stopping before confident
    mistakes and so stops early on small tables (README: the quality table).
    """
    monitor = config.monitor
    if monitor == "auto":
        return "valid_loss" if task != "regression" else "rmse"
    allowed = (("rmse", "mae", "r2", "valid_loss") if task == "regression"
               else ("valid_loss", "log_loss", "accuracy", "f1", "roc_auc"))
    if monitor not in allowed:
        raise ConfigError(f"monitor {monitor!r} does not fit a {task} task; use one of {allowed}", field="monitor")
    return monitor


@functools.cache
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def lineage(dataset: Dataset, seed: int) -> dict[str, Any]:
    """Where a model came from: data hash, time, versions, git commit."""
    import importlib.metadata as md

    torch = require("torch", "train")
    return {
        "data_name": dataset.name,
        "data_hash": dataset.data_hash,
        "data_rows": len(dataset.frame),
        "split_seed": seed,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "kit_version": md.version("kit"),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": _git_commit(),
    }


def train(
    data: DataLike = "breast_cancer",
    config: TrainConfig | None = None,
    *,
    data_config: DataConfig | None = None,
    splits: Splits | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    baselines: bool = True,
) -> TrainResult:
    """Train a network on a dataset and return a bundle ready for the next steps.

    Args:
        data: A :class:`~kit.data.Dataset`, a :class:`~kit.config.DataConfig`, a built-in name, a
            file path or a DataFrame.
        config: Training settings; defaults to ``TrainConfig()``.
        data_config: Loading and split settings when ``data`` is not a DataConfig (defaults to the
            dataset's own config, else ``DataConfig()``).
        splits: Reuse precomputed splits (tuning trains many models on one split).
        callbacks: Observers of the loop; ``on_epoch_end`` may return ``True`` to stop.
        progress: Show a ``tqdm.auto`` progress bar.
        baselines: Also fit a linear model and HistGradientBoosting on the same preprocessed split
            and store their metrics next to the network's (``bundle.baselines``); tuning trials
            turn this off.

    Returns:
        The bundle, the module, the per-epoch history and why training stopped.

    Raises:
        BuilderError: If the network's builder is unknown, cannot be imported, refuses its
            parameters or breaks the contract (named, before the first epoch).
    """
    torch = require("torch", "train")
    from kit import drift, nets
    from kit._train_inputs import inputs_for
    from kit.bundle import ModelBundle

    config = config or TrainConfig()
    dataset, data_config = resolve(data, data_config)
    splits = splits or dataset.split(data_config.valid_size, data_config.test_size, data_config.seed)
    task = dataset.task
    monitor = _monitor(config, task)
    higher = monitor != "valid_loss" and km.HIGHER_IS_BETTER[monitor]

    images = isinstance(dataset, ImageDataset)
    if config.augment and not images:
        raise ConfigError(f"augment {list(config.augment)} is for images; {dataset.name!r} is a table", field="augment")
    pre = preprocessor_for(dataset, data_config).fit(splits.train.X)
    device = torch.device(pick_device(config.device))
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)

    def tensor(a: np.ndarray, dtype: Any) -> Any:
        return torch.as_tensor(a, dtype=dtype, device=device)

    n_out = len(dataset.label_names or []) if task != "regression" else 1
    scaling = None
    if task == "regression":
        y_mean, y_std = float(splits.train.y.mean()), float(splits.train.y.std()) or 1.0
        scaling = {"mean": y_mean, "std": y_std}
        ytr = tensor((splits.train.y - y_mean) / y_std, torch.float32).unsqueeze(1)
        yva = tensor((splits.valid.y - y_mean) / y_std, torch.float32).unsqueeze(1)
        loss_fn = torch.nn.functional.mse_loss
    else:
        ytr, yva = tensor(splits.train.y, torch.long), tensor(splits.valid.y, torch.long)
        loss_fn = torch.nn.functional.cross_entropy
    train_loss_fn = loss_fn
    if task != "regression" and config.label_smoothing:
        train_loss_fn = functools.partial(loss_fn, label_smoothing=config.label_smoothing)
    xtr = inputs_for(pre, splits.train.X, device, config.augment)  # images stay uint8 until a batch is drawn
    xva = inputs_for(pre, splits.valid.X, device)

    spec, model, source = nets.prepare(config, pre.network_input, n_out)  # every contract check, before epoch 1
    model = model.to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, **_adamw_options(device))
    n = len(xtr)
    bs = min(config.batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * config.epochs
    warmup = config.warmup_epochs * steps_per_epoch
    batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    drop_tail = batch_norm and n % bs == 1  # a batch of one breaks BatchNorm

    def evaluate() -> tuple[float, float, dict[str, float]]:
        model.eval()
        with torch.no_grad():
            out = xva.outputs(model)
        objective, extra = float(train_loss_fn(out, yva)), {}
        if monitor in ("valid_loss", "log_loss", "rmse"):
            loss = objective if monitor == "valid_loss" else float(loss_fn(out, yva))
            value = loss if monitor != "rmse" else math.sqrt(loss) * (scaling or {"std": 1.0})["std"]
        elif task == "regression":
            pred = out[:, 0].cpu().numpy() * scaling["std"] + scaling["mean"]  # type: ignore[index]
            value = km.regression(splits.valid.y, pred)[monitor]
        else:
            value = km.classification(splits.valid.y, torch.softmax(out, 1).cpu().numpy())[monitor]
        if task != "regression" and monitor != "accuracy":
            extra = {"accuracy": float((out.argmax(1) == yva).float().mean())}
        model.train()
        return objective, value, extra

    for cb in callbacks:
        cb.on_train_begin(config, n)
    bar = TqdmCallback() if progress else None
    if bar:
        bar.on_train_begin(config, n)
    history: list[dict[str, float]] = []
    best_value, best_epoch, best_state = -math.inf if higher else math.inf, 0, None
    stopped, step, start = "completed", 0, time.perf_counter()
    model.train()
    try:
        for epoch in range(1, config.epochs + 1):
            perm = torch.randperm(n, generator=gen).to(device)
            running = torch.zeros((), device=device)
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                if drop_tail and len(idx) == 1:
                    continue
                lr = lr_at(step, total, warmup, config)
                for group in opt.param_groups:
                    group["lr"] = lr
                loss = train_loss_fn(model(xtr.batch(idx, gen)), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running += loss.detach() * len(idx)
                step += 1
            valid_loss, value, shown = evaluate()
            improved = value > best_value if higher else value < best_value
            if improved or best_state is None:
                best_value, best_epoch = value, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            state = EpochState(epoch, config.epochs, float(running) / n, valid_loss, monitor, value,
                               best_value, best_epoch, lr, time.perf_counter() - start, shown)
            history.append(state.as_dict())
            if bar:
                bar.on_epoch_end(state)
            if any([bool(cb.on_epoch_end(state)) for cb in callbacks]):
                stopped = "callback"
                break
            if config.patience and epoch - best_epoch >= config.patience:
                stopped = "early_stopping"
                break
    finally:
        if bar:
            bar.on_train_end(history)
    for cb in callbacks:
        cb.on_train_end(history)

    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    weights = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    bundle = ModelBundle(
        preprocessor=pre, spec=spec.to_dict(), weights=weights, task=task, target=dataset.target,
        label_names=dataset.label_names, target_scaling=scaling,
        configs={"data": data_config.to_dict(), "train": config.to_dict()},
        lineage={**lineage(dataset, data_config.seed), "device": str(device), "best_epoch": best_epoch,
                 "epochs_run": len(history), "stopped": stopped,
                 **({"class_counts": splits.class_counts(dataset.label_names)} if dataset.label_names else {})},
        history=history, reference=drift.training_reference(dataset, splits.train.X, pre),
        artifacts={nets.SOURCE_ARTIFACT: source.text.encode("utf-8")},
    )
    bundle.metrics = {"valid": bundle.evaluate(splits.valid.X, dataset.decode_target(splits.valid.y)),
                      "test": bundle.evaluate(splits.test.X, dataset.decode_target(splits.test.y))}
    if baselines and pre.n_features_out <= BASELINE_MAX_INPUTS:  # images: only small ones (flattened pixels)
        from kit.baselines import fit_baselines

        section = fit_baselines(splits.train, {"valid": splits.valid, "test": splits.test}, pre, task,
                                bundle.metrics, seed=config.seed)
        bundle.sections[section.NAME] = section.to_dict()
    return TrainResult(bundle, model, history, best_epoch, stopped, splits)


def _adamw_options(device: Any) -> dict[str, bool]:
    """The fastest AdamW implementation for the device: fused kernels (CPU and CUDA in torch >= 2.4)."""
    torch = require("torch", "train")
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {}
    return {"fused": True}
