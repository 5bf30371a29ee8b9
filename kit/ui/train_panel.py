"""Train panel: every TrainConfig field, Train / Stop, a progress bar and a live loss and metric plot.

The controls hold ``session.train_config`` exactly (text boxes, no slider that rounds a value), so
after Tune's "Use best parameters" they show the tuned config digit for digit, and the panel prints
the ``kit train`` command that trains the same. What the table and plot show is always one run:
the current model's (its config, history and stop reason come from the bundle itself), or the run
in progress.
"""

from __future__ import annotations

import dataclasses
import html
import shlex
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.config import TrainConfig
from kit.config._data import ACTIVATIONS, NORMS, SCHEDULERS
from kit.errors import ConfigError
from kit.train import Callback, EpochState
from kit.ui._base import LAYOUT, STYLE, Panel, metrics_html, table_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle
    from kit.train import TrainResult

STOPPED = {"completed": "ran every epoch", "early_stopping": "stopped early (no validation improvement)",
           "callback": "stopped by you (Stop button)"}
"""How a run ended, in words (``TrainResult.stopped`` values)."""

CLI_FLAGS = {"epochs": "--epochs", "patience": "--patience", "lr": "--lr", "weight_decay": "--weight-decay",
             "dropout": "--dropout", "batch_size": "--batch-size", "hidden": "--hidden", "activation": "--activation",
             "norm": "--norm", "scheduler": "--scheduler", "warmup_epochs": "--warmup-epochs",
             "monitor": "--monitor", "seed": "--seed", "device": "--device"}
"""TrainConfig field -> ``kit train`` option."""


class _LiveCallback(Callback):
    """Feeds the panel every epoch and asks the loop to stop when the cancel flag is set."""

    def __init__(self, panel: TrainPanel, cancel: threading.Event, every_s: float = 1.0) -> None:
        self.panel, self.cancel, self.every_s = panel, cancel, every_s
        self.last = 0.0
        self.drawn = 0

    def on_train_begin(self, config: TrainConfig, n_train: int) -> None:
        self.panel.live = []
        self.panel.progress.max, self.panel.progress.value = config.epochs, 0

    def on_epoch_end(self, state: EpochState) -> bool | None:
        self.panel.live.append(state)
        self.panel.progress.value = state.epoch
        self.panel.progress.description = f"epoch {state.epoch}"
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.panel.refresh_plot()
            # Keep drawing under ~20% of the time: a slow machine redraws less often (the first
            # draw also imports matplotlib, so it does not count).
            if self.drawn:
                self.every_s = max(self.every_s, 5 * (time.perf_counter() - now))
            self.drawn += 1
            self.last = time.perf_counter()
            self.panel._say(f"epoch {state.epoch}/{state.epochs}: train loss {state.train_loss:.4f}, "
                            f"{state.monitor} {state.value:.4f} (best {state.best_value:.4f} "
                            f"at epoch {state.best_epoch})")
        return self.cancel.is_set()


def cli_command(config: TrainConfig, data: Any = None) -> str:
    """The ``kit train`` command line that trains exactly ``config`` (on ``data``, a DataConfig).

    Only fields that differ from TrainConfig's defaults are written; floats use ``repr`` so they
    round-trip exactly.
    """
    default = TrainConfig()
    parts = ["kit", "train"]
    if data is not None:
        base = type(data)()
        for name, flag in (("source", "--data"), ("target", "--target"), ("task", "--task"),
                           ("valid_size", "--valid-size"), ("test_size", "--test-size"), ("seed", "--split-seed"),
                           ("unknown_category", "--unknown-category")):
            value = getattr(data, name)
            if value is not None and (name == "source" or value != getattr(base, name)):
                parts += [flag, str(value)]
    for name, flag in CLI_FLAGS.items():
        value = getattr(config, name)
        if value != getattr(default, name):
            parts += [flag, ",".join(map(str, value)) if name == "hidden" else repr(value) if isinstance(
                value, float) else str(value)]
    parts += ["--out", "runs/train"]
    return shlex.join(parts)


class TrainPanel(Panel):
    """Train a network on the session's data with live curves; Stop keeps the best weights so far."""

    title = "Train"
    step = "train"
    action = "Train"

    def __init__(self, session: Any = None) -> None:
        self.live: list[EpochState] = []
        self.training = False
        super().__init__(session)
        self.widget.children = (*self.widget.children[:-2], self.command, *self.widget.children[-2:])

    def controls(self) -> list[Any]:
        """One control per TrainConfig field that a user sets, initialised from ``session.train_config``."""
        def number(cls: Any, description: str, **kw: Any) -> Any:
            return cls(description=description, style=STYLE, layout=LAYOUT, **kw)

        self.epochs = number(widgets.BoundedIntText, "max epochs", min=1, max=1_000_000)
        self.patience = number(widgets.BoundedIntText, "patience (0 = off)", min=0, max=1_000_000)
        self.lr = number(widgets.BoundedFloatText, "learning rate", min=1e-12, max=10.0)
        self.weight_decay = number(widgets.BoundedFloatText, "weight decay", min=0.0, max=10.0)
        self.hidden = widgets.Text(description="hidden widths", placeholder="128,64", style=STYLE, layout=LAYOUT)
        self.dropout = number(widgets.BoundedFloatText, "dropout", min=0.0, max=0.999)
        self.batch_size = number(widgets.BoundedIntText, "batch size", min=1, max=1_000_000)
        self.activation = widgets.Dropdown(options=ACTIVATIONS, description="activation", style=STYLE, layout=LAYOUT)
        self.norm = widgets.Dropdown(options=NORMS, description="normalization", style=STYLE, layout=LAYOUT)
        self.scheduler = widgets.Dropdown(options=SCHEDULERS, description="lr schedule", style=STYLE, layout=LAYOUT)
        self.warmup_epochs = number(widgets.BoundedIntText, "warm-up epochs", min=0, max=1_000_000)
        self.monitor = widgets.Dropdown(options=["auto"], description="early-stop metric", style=STYLE, layout=LAYOUT)
        self.seed = number(widgets.IntText, "seed")
        self.device = widgets.Dropdown(options=["auto", "cpu", "cuda"], description="device", style=STYLE,
                                       layout=LAYOUT)
        self.fixed = widgets.HTML()
        self.command = widgets.HTML()
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="epoch 0", style=STYLE,
                                            layout=LAYOUT)
        self.sync_controls()
        for control in self.fields().values():
            control.observe(lambda _c: self._show_command(), names="value")
        left = [self.epochs, self.patience, self.lr, self.weight_decay, self.scheduler, self.warmup_epochs,
                self.monitor]
        right = [self.hidden, self.dropout, self.activation, self.norm, self.batch_size, self.seed, self.device]
        return [widgets.HBox([widgets.VBox(left), widgets.VBox(right)]), self.fixed, self.progress]

    def fields(self) -> dict[str, Any]:
        """TrainConfig field -> its control."""
        return {"epochs": self.epochs, "patience": self.patience, "lr": self.lr, "weight_decay": self.weight_decay,
                "hidden": self.hidden, "dropout": self.dropout, "batch_size": self.batch_size,
                "activation": self.activation, "norm": self.norm, "scheduler": self.scheduler,
                "warmup_epochs": self.warmup_epochs, "monitor": self.monitor, "seed": self.seed,
                "device": self.device}

    def sync_controls(self) -> None:
        """Show ``session.train_config`` in the controls, exactly (after "use best parameters", a bundle ...)."""
        from kit.metrics import HIGHER_IS_BETTER

        cfg = self.session.train_config
        self.monitor.options = list(dict.fromkeys(["auto", *HIGHER_IS_BETTER, cfg.monitor]))
        if cfg.device not in self.device.options:
            self.device.options = [*self.device.options, cfg.device]
        for name, control in self.fields().items():
            value = getattr(cfg, name)
            control.value = ",".join(str(h) for h in value) if name == "hidden" else value
        others = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in self.fields()}
        self.fixed.value = ("<small>also in this config (set in code or by the network picker): "
                            + ", ".join(f"<code>{k}={html.escape(repr(v))}</code>" for k, v in others.items())
                            + "</small>")
        self._show_command()

    def config(self) -> TrainConfig:
        """The TrainConfig the controls describe (validated); fields without a control keep the session's.

        Raises:
            ConfigError: On a malformed hidden-widths text or an invalid value.
        """
        try:
            hidden = tuple(int(h) for h in self.hidden.value.replace(" ", "").split(",") if h)
        except ValueError:
            raise ConfigError(f"hidden widths must be integers separated by commas, but got "
                              f"{self.hidden.value!r}", field="hidden") from None
        values = {name: control.value for name, control in self.fields().items()}
        return self.session.train_config.replace(**{**values, "hidden": hidden})

    def _show_command(self) -> None:
        try:
            command = cli_command(self.config(), self.session.data_config)
        except ConfigError as exc:
            self.command.value = f"<small style='color:#b00020'>{html.escape(exc.message)}</small>"
            return
        self.command.value = f"<small>the same from a terminal: <code>{html.escape(command)}</code></small>"

    def work(self, cancel: threading.Event) -> TrainResult:
        """Train with the panel's config on the session's data and store the result."""
        from kit.train import train

        config = self.config()
        dataset = self.session.require_data()
        self.session.train_config = config
        self.training = True
        try:
            result = train(dataset, config, data_config=self.session.data_config, splits=self.session.splits,
                           callbacks=[_LiveCallback(self, cancel)])
        finally:
            self.training = False
        self.session.set_result(result)
        self.session.record("train", {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                                      "stopped": result.stopped, "config": config.to_dict(),
                                      "metrics": result.bundle.metrics})
        return result

    def depends_on(self) -> tuple[str, ...]:
        """Re-render whenever the current model changes."""
        return ("train", "train_config", "bundle", "tune", "quantize", "explain", "gate", "data")

    def _changed(self, what: str) -> None:
        if what in ("train_config", "data") and not self.job.running:
            self.sync_controls()
        super()._changed(what)

    def render(self) -> None:
        """The current model's run: where it comes from, how it ended, its config and metrics."""
        bundle = self.session.bundle
        if bundle is None:
            self.table.value = ""
            return
        self.table.value = run_html(bundle, self.config_or_none())

    def config_or_none(self) -> TrainConfig | None:
        """The controls' config, or ``None`` while they hold an invalid value."""
        try:
            return self.config()
        except ConfigError:
            return None

    def history(self) -> list[dict[str, float]]:
        """Per-epoch rows to plot: the live run while training, else the current model's own history."""
        if self.training:
            return [s.as_dict() for s in self.live]
        return self.session.bundle.history if self.session.bundle is not None else []

    def draw(self, fig: Figure) -> bool:
        """Train and valid loss (left) and the monitored metric (right) per epoch, of one run."""
        rows = self.history()
        if not rows:
            return False
        epochs = [r["epoch"] for r in rows]
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(epochs, [r["train_loss"] for r in rows], label="train loss")
        ax1.plot(epochs, [r["valid_loss"] for r in rows], label="valid loss")
        ax1.set_xlabel("epoch")
        ax1.legend()
        skip = {"epoch", "train_loss", "valid_loss", "lr", "elapsed"}
        name = next((k for k in rows[0] if k not in skip), None)
        if name is not None:
            ax2.plot(epochs, [r[name] for r in rows], color="#c44e52")
            ax2.set_title(f"valid {name}")
            ax2.set_xlabel("epoch")
        for ax in (ax1, ax2):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle("current run" if self.training else "the current model's training run", fontsize=9)
        return True


def run_html(bundle: ModelBundle, controls: TrainConfig | None) -> str:
    """Where the current model comes from, how its run ended, its config (and how the controls differ)."""
    lineage, trained = bundle.lineage, bundle.configs.get("train", {})
    origin = "trained in the Train step"
    if lineage.get("trial_number") is not None:
        origin = (f"retrained from trial {lineage['trial_number']} of study "
                  f"<code>{html.escape(str(lineage.get('study_name')))}</code> (Tune → Use best parameters)")
    stopped = STOPPED.get(str(lineage.get("stopped")), str(lineage.get("stopped", "")))
    metric = bundle.primary_metric
    value = bundle.metrics.get("test", {}).get(metric)
    head = (f"<p>current model: {origin}; best epoch {lineage.get('best_epoch')} of {lineage.get('epochs_run')} "
            f"run, {stopped}; <b>{metric}</b> = {value:.4f} (test)</p>" if value is not None else "")
    rows = [{"setting": k, "value": ",".join(map(str, v)) if isinstance(v, list) else v} for k, v in trained.items()
            if k != "extra" or v]
    diff = ""
    if controls is not None and trained:
        changed = [k for k, v in controls.to_dict().items() if trained.get(k) != v]
        if changed:
            diff = ("<p style='color:#8a6d00'>the controls differ from this model's config in "
                    + ", ".join(f"<code>{k}</code>" for k in changed) + ": press Train to train them</p>")
    return (head + diff + "<div style='display:flex;gap:24px'><div>" + metrics_html(bundle.metrics)
            + "</div><div style='max-height:260px;overflow:auto'>" + table_html(rows, 40) + "</div></div>")
