"""Train panel: network and hyperparameters, Train / Stop, live curves, the network next to its baselines.

The network picker (:mod:`kit.ui.net_picker`) lists the zoo and registered builders and shows the
chosen builder's parameters as fields.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.config import TrainConfig
from kit.train import Callback, EpochState
from kit.ui._base import LAYOUT, STYLE, Panel, metrics_html
from kit.ui.baselines_view import baselines_html
from kit.ui.net_picker import NetPicker

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.train import TrainResult



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
    """Train a network (the zoo's or your own builder) on the session's data with live curves.

    Stop keeps the best weights so far; the result shows the network next to the baselines.
    """

    title = "Train"
    step = "train"
    action = "Train"

    def __init__(self, session: Any = None) -> None:
        self.live: list[EpochState] = []
        self.training = False
        super().__init__(session)

    def controls(self) -> list[Any]:
        """Hyperparameter controls, initialised from ``session.train_config``."""
        self.epochs = widgets.BoundedIntText(min=1, max=100_000, description="max epochs", style=STYLE,
                                             layout=LAYOUT)
        self.patience = widgets.BoundedIntText(min=0, max=10_000, description="patience", style=STYLE,
                                               layout=LAYOUT)
        self.lr = widgets.FloatLogSlider(base=10, min=-5, max=-0.5, step=0.1, readout_format=".1e",
                                         description="learning rate", style=STYLE, layout=LAYOUT)
        self.net = NetPicker(self.session.train_config)  # the network and its parameters (hidden, dropout, ...)
        self.batch_size = widgets.Dropdown(options=[16, 32, 64, 128, 256, 512], description="batch size",
                                           style=STYLE, layout=LAYOUT)
        self.seed = widgets.IntText(description="seed", style=STYLE, layout=LAYOUT)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="epoch 0", style=STYLE,
                                            layout=LAYOUT)
        self.sync_controls()
        return [self.net.box, self.epochs, self.patience, self.lr, self.batch_size, self.seed, self.progress]

    def sync_controls(self) -> None:
        """Show ``session.train_config`` in the controls (after "use best parameters", a bundle ...)."""
        cfg = self.session.train_config
        self.epochs.value = cfg.epochs
        self.patience.value = cfg.patience
        self.lr.value = cfg.lr
        self.net.show(cfg)
        if cfg.batch_size not in self.batch_size.options:
            self.batch_size.options = sorted({*self.batch_size.options, cfg.batch_size})
        self.batch_size.value = cfg.batch_size

    def config(self) -> TrainConfig:
        """The TrainConfig the controls describe (validated).

        Raises:
            ConfigError: On an unknown network, a malformed parameter field or an invalid value.
        """
        return self.net.apply(self.session.train_config).replace(
            epochs=int(self.epochs.value), patience=int(self.patience.value), lr=float(self.lr.value),
            batch_size=int(self.batch_size.value), seed=int(self.seed.value))

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
        """Re-render on a new result or new hyperparameters."""
        return ("train", "train_config", "bundle")

    def _changed(self, what: str) -> None:
        if what == "train_config" and not self.job.running:
            self.sync_controls()
        super()._changed(what)

    def render(self) -> None:
        """Show the metrics table of the current bundle."""
        result, bundle = self.session.result, self.session.bundle
        if bundle is None:
            return
        head = ""
        if result is not None:
            head = (f"<p>best epoch {result.best_epoch} of {len(result.history)} ({result.stopped}); "
                    f"primary metric <b>{bundle.primary_metric}</b> = "
                    f"{bundle.metrics.get('test', {}).get(bundle.primary_metric, float('nan')):.4f} (test)</p>")
        self.table.value = head + metrics_html(bundle.metrics) + baselines_html(bundle)

    def history(self) -> list[dict[str, float]]:
        """Per-epoch rows to plot: the live run while training, else the current bundle's history."""
        if self.training:
            return [s.as_dict() for s in self.live]
        if self.session.result is not None:
            return self.session.result.history
        return self.session.bundle.history if self.session.bundle is not None else []

    def draw(self, fig: Figure) -> bool:
        """Train and valid loss (left) and the monitored metric (right) per epoch."""
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
        return True
