"""Tune panel: trials, timeout, pruner and storage; a live trial table and history; "use best parameters".

The study runs through :func:`kit.tune.tune` one trial target at a time (``n_trials=1, 2, ...``
on the same study, which resumes), so the table updates after every trial and Stop takes effect
at the next trial boundary. The final call retrains the best configuration into a bundle.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.errors import KitError
from kit.ui._base import LAYOUT, STYLE, Panel, table_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.tune import TuneResult

class TunePanel(Panel):
    """Search hyperparameters with Optuna on the session's data; adopt the best with one click."""

    title = "Tune"
    step = "tune"
    action = "Tune"

    def __init__(self, session: Any = None) -> None:
        self.trials: list[dict[str, Any]] = []
        self.result: TuneResult | None = None
        super().__init__(session)

    def controls(self) -> list[Any]:
        """Trials, timeout, pruner, storage, study name and epochs per trial."""
        from kit.tune import PRUNERS

        config = self.session.tune_config
        self.n_trials = widgets.BoundedIntText(value=config.n_trials, min=1, max=10_000,
                                               description="trials", style=STYLE, layout=LAYOUT)
        self.timeout = widgets.BoundedFloatText(value=0, min=0, max=1e6, description="timeout s (0 = none)",
                                                style=STYLE, layout=LAYOUT)
        self.pruner = widgets.Dropdown(options=list(PRUNERS), value="median", description="pruner", style=STYLE,
                                       layout=LAYOUT)
        self.storage = widgets.Text(value="", placeholder="empty: SQLite file in the output folder",
                                    description="storage", style=STYLE, layout=LAYOUT)
        self.study_name = widgets.Text(value="", placeholder="empty: a new study", description="study name",
                                       style=STYLE, layout=LAYOUT)
        self.trial_epochs = widgets.BoundedIntText(value=config.base(self.session.train_config).epochs, min=1,
                                                   max=100_000,
                                                   description="epochs per trial", style=STYLE, layout=LAYOUT)
        self.use_best = widgets.Button(description="Use best parameters", icon="check", disabled=True,
                                       layout={"width": "auto"})
        self.use_best.on_click(lambda _b: self.adopt())
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="trials 0", style=STYLE,
                                            layout=LAYOUT)
        self.stopped_by_user = False
        return [self.n_trials, self.timeout, self.pruner, self.storage, self.study_name, self.trial_epochs,
                self.use_best, self.progress]

    def work(self, cancel: threading.Event) -> TuneResult:
        """Run the study trial by trial until the target, the timeout or Stop; retrain the best."""
        from kit.tune import tune

        data_config = self.session.data_config
        self.session.require_data()
        base = self.session.train_config.replace(epochs=int(self.trial_epochs.value),
                                                 patience=min(self.session.train_config.patience,
                                                              int(self.trial_epochs.value)))
        name = self.study_name.value.strip() or f"wizard-{data_config.source.split('/')[-1]}-" \
                                                 f"{dt.datetime.now():%Y%m%d-%H%M%S}"
        self.study_name.value = name
        options: dict[str, Any] = {"storage": self.storage.value.strip() or None, "study_name": name,
                                   "pruner": self.pruner.value, "train": base,
                                   "run_dir": str(self.session.output_dir / "tune")}
        target = int(self.n_trials.value)
        deadline = time.monotonic() + float(self.timeout.value) if self.timeout.value else math.inf
        self.trials, self.result, self.stopped_by_user = [], None, False
        self.progress.max, self.progress.value, self.progress.description = target, 0, "trials 0"
        finished = 0
        for k in range(1, target + 1):
            if cancel.is_set() or time.monotonic() >= deadline:
                self.stopped_by_user = cancel.is_set()
                break
            try:
                # seed + k: every call builds a fresh sampler, so each step gets its own seed.
                res = tune(data_config, n_trials=k, seed=k, retrain=False, **options)
            except KitError as exc:
                if type(exc) is not KitError:  # bad settings: ConfigError, DataError ...
                    raise
                continue  # no trial completed yet (all pruned or failed): keep going
            finally:
                self.progress.value, self.progress.description = k, f"trials {k}"
                self._say(f"trial {k} of {target} finished")
            self._update(res)
            finished = k
        if finished == 0:
            why = "you stopped it" if cancel.is_set() else "no trial completed"
            raise KitError(f"tuning ended before any trial completed ({why})", field="n_trials")
        self._say(f"retraining the best of {len(self.trials)} trials"
                  + (" (stopped by you)" if self.stopped_by_user else "") + " ...")
        result = tune(data_config, n_trials=finished, seed=finished, retrain=True, **options)
        self._update(result)
        self.session.record("tune", result.summary().to_dict(), result)
        return result

    def _update(self, res: TuneResult) -> None:
        self.result = res
        rows = []
        for t in res.study.get_trials(deepcopy=False):
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
                t.datetime_start else None
            rows.append({"trial": t.number, "state": t.state.name, res.metric: t.value if t.value is not None
                         else "", **{k: round(v, 6) if isinstance(v, float) else v for k, v in t.params.items()},
                         "seconds": round(seconds, 1) if seconds is not None else ""})
        self.trials = rows
        self._safe_render()

    def adopt(self) -> None:
        """Make the best trial's config the session's TrainConfig (exactly) and its retrained bundle current."""
        if self.result is None:
            return
        previous, best = self.session.train_config, self.result.best_config
        self.session.train_config = best
        if self.result.bundle is not None:
            self.session.set_bundle(self.result.bundle, "tune")
        self.session.notify("train_config")
        changed = [f"{k} {v!r} -> {best.to_dict()[k]!r}" for k, v in previous.to_dict().items()
                   if best.to_dict()[k] != v]
        self._say(f"Train now holds trial {self.result.best_trial}'s config exactly ({self.result.metric} "
                  f"{self.result.best_value:.4f}); changed: {'; '.join(changed) or 'nothing'}")

    def _finished(self, result: Any, seconds: float) -> None:
        super()._finished(result, seconds)
        self.use_best.disabled = self.result is None or self.result.bundle is None
        if self.stopped_by_user and self.result is not None:
            self._say(f"stopped by you after {len(self.trials)} trials; the best was retrained in {seconds:.1f} s")

    def render(self) -> None:
        """The trial table (best first line) and the best parameters."""
        res = self.result
        if res is None:
            return
        head = (f"<p>study <code>{res.study.study_name}</code> on <code>{res.storage}</code>: "
                f"{res.counts()}; best trial {res.best_trial}, valid {res.metric} = {res.best_value:.4f}</p>")
        if res.bundle is not None:
            metric = res.bundle.primary_metric
            test = res.bundle.metrics.get("test", {}).get(metric)
            head += (f"<p>the best config retrained: <b>test {metric} {test:.4f}</b>; press <i>Use best "
                     "parameters</i> to make it the current model and Train's config</p>" if test is not None else "")
        self.table.value = head + "<div style='max-height:240px;overflow:auto'>" + table_html(self.trials, 200) \
            + "</div>"

    def draw(self, fig: Figure) -> bool:
        """Each completed trial's value and the best so far."""
        res = self.result
        done = [r for r in self.trials if r["state"] == "COMPLETE"]
        if res is None or not done:
            return False
        ax = fig.add_subplot()
        xs = [r["trial"] for r in done]
        ys = [float(r[res.metric]) for r in done]
        better = max if res.direction == "maximize" else min
        best = [better(ys[: i + 1]) for i in range(len(ys))]
        ax.scatter(xs, ys, label="trial", alpha=0.7)
        ax.step(xs, best, where="post", color="#c44e52", label="best so far")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel(f"valid {res.metric}")
        ax.legend()
        return True

    def summary_html(self) -> str:
        """Trial table plus the best parameters."""
        res = self.result
        if res is None:
            return ""
        params = table_html([{"parameter": k, "best": v} for k, v in res.best_params.items()])
        return str(self.table.value) + params
