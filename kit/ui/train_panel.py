"""Train panel: the network picker, every TrainConfig field, Train / Stop, a progress bar and live curves.

The network picker (:mod:`kit.ui.net_picker`) lists the zoo and registered builders for the kind of
data loaded (images: ``cnn``, the session's default for them) and shows the chosen builder's
parameters as fields; the other controls hold ``session.train_config`` exactly
(text boxes, no slider that rounds a value), so after Tune's "Use best parameters" the panel
shows the tuned config digit for digit, ``net.*`` parameters included, and prints the
``kit train`` command that trains the same (:mod:`kit.ui.train_view`). What the table and plot
show is always one run: the current model's (its config, history and stop reason come from the
bundle itself), or the run in progress; the network stands next to the baselines fitted on the
same split.
"""

from __future__ import annotations

import dataclasses
import html
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.config import MLP_FIELDS, TrainConfig
from kit.config._data import AUGMENT, SCHEDULERS
from kit.errors import ConfigError
from kit.train import Callback, EpochState
from kit.ui._base import LAYOUT, STYLE, Panel
from kit.ui.net_picker import NetPicker
from kit.ui.train_view import cli_command, run_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.train import TrainResult

NET_FIELDS = ("net", "net_params", *MLP_FIELDS)
"""TrainConfig fields the network picker holds (the builder and its parameters)."""


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
        """The network picker and one control per other TrainConfig field a user sets, from ``session.train_config``."""
        def number(cls: Any, description: str, **kw: Any) -> Any:
            return cls(description=description, style=STYLE, layout=LAYOUT, **kw)

        self.epochs = number(widgets.BoundedIntText, "max epochs", min=1, max=1_000_000)
        self.patience = number(widgets.BoundedIntText, "patience (0 = off)", min=0, max=1_000_000)
        self.lr = number(widgets.BoundedFloatText, "learning rate", min=1e-12, max=10.0)
        self.weight_decay = number(widgets.BoundedFloatText, "weight decay", min=0.0, max=10.0)
        self.label_smoothing = number(widgets.BoundedFloatText, "label smoothing", min=0.0, max=0.999)
        self.batch_size = number(widgets.BoundedIntText, "batch size", min=1, max=1_000_000)
        # The network and its parameters (hidden, dropout, activation, norm, net_params).
        self.net = NetPicker(self.session.train_config, self.session.data_kind)
        self.scheduler = widgets.Dropdown(options=SCHEDULERS, description="lr schedule", style=STYLE, layout=LAYOUT)
        self.warmup_epochs = number(widgets.BoundedIntText, "warm-up epochs", min=0, max=1_000_000)
        self.monitor = widgets.Dropdown(options=["auto"], description="early-stop metric", style=STYLE, layout=LAYOUT)
        self.seed = number(widgets.IntText, "seed")
        self.device = widgets.Dropdown(options=["auto", "cpu", "cuda"], description="device", style=STYLE,
                                       layout=LAYOUT)
        self.augment = widgets.SelectMultiple(options=AUGMENT, rows=2, description="augment (images)", style=STYLE,
                                              layout=LAYOUT)
        self.fixed = widgets.HTML()
        self.command = widgets.HTML()
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="epoch 0", style=STYLE,
                                            layout=LAYOUT)
        self.sync_controls()
        for control in self.fields().values():
            control.observe(lambda _c: self._show_command(), names="value")
        self.net.on_change(self._show_command)
        left = [self.epochs, self.patience, self.lr, self.weight_decay, self.scheduler, self.warmup_epochs,
                self.monitor]
        right = [self.label_smoothing, self.batch_size, self.seed, self.device, self.augment]
        return [widgets.HBox([widgets.VBox(left), widgets.VBox(right)]), self.net.box, self.fixed, self.progress]

    def fields(self) -> dict[str, Any]:
        """TrainConfig field -> its control (the network's fields, :data:`NET_FIELDS`, are the picker's)."""
        return {"epochs": self.epochs, "patience": self.patience, "lr": self.lr, "weight_decay": self.weight_decay,
                "label_smoothing": self.label_smoothing, "batch_size": self.batch_size, "scheduler": self.scheduler,
                "warmup_epochs": self.warmup_epochs, "monitor": self.monitor, "seed": self.seed,
                "device": self.device, "augment": self.augment}

    def sync_controls(self) -> None:
        """Show ``session.train_config`` in the controls, exactly (after "use best parameters", a bundle ...)."""
        from kit.metrics import HIGHER_IS_BETTER

        cfg = self.session.train_config
        self.monitor.options = list(dict.fromkeys(["auto", "valid_loss", *HIGHER_IS_BETTER, cfg.monitor]))
        if cfg.device not in self.device.options:
            self.device.options = [*self.device.options, cfg.device]
        for name, control in self.fields().items():
            control.value = getattr(cfg, name)
        self.net.show(cfg, self.session.data_kind)
        others = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                  if f.name not in self.fields() and f.name not in NET_FIELDS}
        set_in_code = {k: v for k, v in others.items() if v}  # e.g. extra={...}; nothing to say when empty
        self.fixed.value = ("<small>also in this config (set in code): "
                            + ", ".join(f"<code>{k}={html.escape(repr(v))}</code>" for k, v in set_in_code.items())
                            + "</small>") if set_in_code else ""
        self._show_command()

    def config(self) -> TrainConfig:
        """The TrainConfig the controls describe (validated); fields without a control keep the session's.

        Raises:
            ConfigError: On an unknown network, a malformed parameter field or an invalid value.
        """
        values = {name: control.value for name, control in self.fields().items()}
        return self.net.apply(self.session.train_config).replace(**values)

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
        baselines = result.baselines
        self.session.record("train", {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                                      "stopped": result.stopped, "config": config.to_dict(),
                                      "metrics": result.bundle.metrics, "network": result.bundle.net.describe(),
                                      "baselines": baselines.to_dict() if baselines is not None else None})
        return result

    def depends_on(self) -> tuple[str, ...]:
        """Re-render whenever the current model changes."""
        return ("train", "train_config", "bundle", "tune", "quantize", "explain", "gate", "data")

    def _changed(self, what: str) -> None:
        if what in ("train_config", "data") and not self.job.running:
            if what == "data" and self.net.kind != self.session.data_kind:
                # Another kind of data: the picker's network, edited or not, is the one to come back to.
                edited = self.config_or_none()
                if edited is not None and edited.net == self.net.choice.value.strip():
                    self.session.keep_network(edited, self.net.kind)
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
