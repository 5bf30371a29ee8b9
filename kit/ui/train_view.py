"""What the Train panel shows besides its controls: the current model's run and its ``kit train`` twin.

:func:`run_html` describes one run only (where the current model comes from, how it ended, its
network, config and metrics, the baselines fitted on the same split); :func:`cli_command` writes
the command line that trains exactly a given config, network and its parameters included.
"""

from __future__ import annotations

import html
import json
import shlex
from typing import TYPE_CHECKING, Any

from kit.config import TrainConfig
from kit.ui._base import metrics_html, table_html
from kit.ui.baselines_view import baselines_html

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

STOPPED = {"completed": "ran every epoch", "early_stopping": "stopped early (no validation improvement)",
           "callback": "stopped by you (Stop button)"}
"""How a run ended, in words (``TrainResult.stopped`` values)."""

CLI_FLAGS = {"net": "--net", "epochs": "--epochs", "patience": "--patience", "lr": "--lr",
             "weight_decay": "--weight-decay", "label_smoothing": "--label-smoothing", "dropout": "--dropout",
             "batch_size": "--batch-size", "hidden": "--hidden", "activation": "--activation", "norm": "--norm",
             "scheduler": "--scheduler", "warmup_epochs": "--warmup-epochs", "monitor": "--monitor", "seed": "--seed",
             "device": "--device", "augment": "--augment"}
"""TrainConfig field -> ``kit train`` option (``net_params`` is ``--net-params``, JSON)."""


def cli_command(config: TrainConfig, data: Any = None) -> str:
    """The ``kit train`` command line that trains exactly ``config`` (on ``data``, a DataConfig).

    Only fields that differ from TrainConfig's defaults are written; floats use ``repr`` and the
    builder's parameters JSON, so they round-trip exactly.
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
            parts += [flag, ",".join(map(str, value)) if name in ("hidden", "augment") else repr(value) if isinstance(
                value, float) else str(value)]
    if config.net_params:
        parts += ["--net-params", json.dumps(config.net_params)]
    parts += ["--out", "runs/train"]
    return shlex.join(parts)


def run_html(bundle: ModelBundle, controls: TrainConfig | None) -> str:
    """The current model's run: origin, how it ended, network, config (and how the controls differ), metrics.

    The baselines fitted on the same split follow the metrics.
    """
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
    if bundle.spec.get("builder"):
        head += f"<p>network <code>{html.escape(bundle.net.describe())}</code></p>"
    # Unset network shorthands (None: the builder's default, shown in the network line) and empty
    # mappings are left out of the table.
    rows = [{"setting": k, "value": _shown(v)} for k, v in trained.items() if v is not None and v != {}]
    diff = ""
    if controls is not None and trained:
        changed = [k for k, v in controls.to_dict().items() if trained.get(k) != v]
        if changed:
            diff = ("<p style='color:#8a6d00'>the controls differ from this model's config in "
                    + ", ".join(f"<code>{k}</code>" for k in changed) + ": press Train to train them</p>")
    return (head + diff + "<div style='display:flex;gap:24px'><div>" + metrics_html(bundle.metrics)
            + "</div><div style='max-height:260px;overflow:auto'>" + table_html(rows, 40) + "</div></div>"
            + baselines_html(bundle))


def _shown(value: Any) -> Any:
    """A config value as one table cell (widths as ``128,64``, parameters as JSON)."""
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return ",".join(map(str, value))
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value
