"""The cells of every notebook, as ``(kind, source)`` pairs: kind is ``md``, ``code`` or ``params``.

Edit here, then run ``notebooks/_build.py``.
"""

from __future__ import annotations

QUICKSTART = [
    ("md", """
# kit quickstart: every step in one wizard

This notebook is the whole path from a table to a served model, in one tabbed UI:
**Data → Train → Tune → Explain → Quantize → Package & serve**. Each tab is a thin panel over a
`kit` function, and all tabs share one *session*, so a model trained in *Train* is the one
*Tune*, *Explain*, *Quantize* and *Package* work on.

Run all cells. With `autorun = True` (the default) the cell after the wizard runs every step
from code, so the notebook also works headless (`kit run`, papermill) and the tabs fill in as it
goes. Set `autorun = False` to click through the tabs yourself: long steps run in the
background with a **Stop** button, so the notebook never freezes.
"""),
    ("params", """
data: str = "breast_cancer"  # built-in dataset (breast_cancer, wine, digits, diabetes) or a CSV/Parquet path
target: str = ""  # target column; needed for files, empty for built-ins
epochs: int = 200  # maximum training epochs (early stopping is on)
autorun: bool = True  # run every step from code below the wizard; False to click through it yourself
steps: str = "data,train,tune,explain,quantize,package"  # the steps autorun runs, comma separated
smoke: bool = False  # tiny epochs and trials, for CI
output_dir: str = "../runs/00_quickstart"  # where bundles and results.json are written
"""),
    ("code", """
import kit
from kit.ui import Wizard

wizard = Wizard(data=kit.DataConfig(source=data, target=target or None),
                train=kit.TrainConfig(epochs=epochs), output_dir=output_dir, smoke=smoke)
wizard
"""),
    ("md", """
## Run every step from code

`wizard.run_all()` runs the same panels synchronously, one step after the other, and prints each
step's outcome as a plain table and plot below (what the HTML report keeps). The tabs above
update while it runs.
"""),
    ("code", """
if autorun:
    wizard.run_all([s.strip() for s in steps.split(",") if s.strip() in wizard.panels])
else:
    print("autorun is off: use the tabs above")
"""),
    ("md", """
## Results

The session holds every step's outcome; `results.json` in `output_dir` keeps the metrics, the
files written and the names registered (e.g. the model store tag), for CI and for the next notebook.
"""),
    ("code", """
import json

path = wizard.write_results("00_quickstart")
summary = json.loads(path.read_text())
print(path)
print(json.dumps({k: summary[k] for k in ("task", "primary_metric", "bundle_path", "tags")}, indent=2))
"""),
]

DATA_TRAIN = [
    ("md", """
# 01 · Data and training

Load a table, look at it, split it, and train a small PyTorch network on it. Everything here is
one `kit` call per step; the notebook only shows what comes back. The trained model is saved as a
**bundle** (preprocessor + weights + schema + metrics + configs), which every later notebook can
start from (`bundle_path`).
"""),
    ("params", """
data: str = "breast_cancer"  # built-in dataset (breast_cancer, wine, digits, diabetes) or a CSV/Parquet path
target: str = ""  # target column; needed for files, empty for built-ins
task: str = "auto"  # auto, binary, multiclass or regression
hidden: str = "128,64"  # hidden layer widths, comma separated
lr: float = 0.003  # peak learning rate (AdamW, warm-up + cosine)
epochs: int = 200  # maximum epochs; early stopping keeps the best
seed: int = 0  # training seed: same seed, same metrics
smoke: bool = False  # tiny epochs, for CI
output_dir: str = "../runs/01_data_train"  # where the bundle and results.json are written
"""),
    ("code", """
%matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt

import kit
from kit.train import train

data_config = kit.DataConfig(source=data, target=target or None, task=task)
ds = kit.load(data_config)
ds.summary()
"""),
    ("md", """
## The target

Before training, look at what is predicted: the class balance for a classifier (a very
unbalanced target makes accuracy misleading), the distribution for a regression.
"""),
    ("code", """
fig, ax = plt.subplots(figsize=(5, 3))
if ds.task == "regression":
    ax.hist(ds.frame[ds.target], bins=30)
else:
    ds.frame[ds.target].value_counts().plot.bar(ax=ax)
ax.set_title(f"{ds.name}: {ds.target}")
plt.show()
"""),
    ("md", """
## Split and train

`train()` fits the preprocessor on the training split only (no leakage), trains with early
stopping on the validation split and reports metrics on the untouched test split.
"""),
    ("code", """
config = kit.TrainConfig(hidden=tuple(int(h) for h in hidden.split(",")), lr=lr,
                         epochs=min(epochs, 15) if smoke else epochs, seed=seed)
splits = ds.split(data_config.valid_size, data_config.test_size, data_config.seed)
print(f"train {len(splits.train)} / valid {len(splits.valid)} / test {len(splits.test)} rows")
result = train(ds, config, data_config=data_config, splits=splits, progress=True)
print(f"best epoch {result.best_epoch} of {len(result.history)} ({result.stopped})")
"""),
    ("code", """
hist = result.history
monitor = [k for k in hist[0] if k not in ("epoch", "train_loss", "valid_loss", "lr", "elapsed")][0]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3))
a1.plot([h["epoch"] for h in hist], [h["train_loss"] for h in hist], label="train loss")
a1.plot([h["epoch"] for h in hist], [h["valid_loss"] for h in hist], label="valid loss")
a1.axvline(result.best_epoch, color="gray", ls=":", label="best epoch")
a1.legend()
a2.plot([h["epoch"] for h in hist], [h[monitor] for h in hist], color="C3")
a2.set_title(f"valid {monitor}")
plt.show()
"""),
    ("md", """
## Metrics and predictions

Metrics come from the bundle itself, through the same `predict` path the HTTP service uses.
"""),
    ("code", """
import pandas as pd

bundle = result.bundle
display(pd.DataFrame(bundle.metrics).round(4))
bundle.infer(splits.test.X.head(5)).to_frame()
"""),
    ("md", """
## Save the bundle

The bundle directory is all a later step needs: `02_tune`, `03_explain`, `04_quantize` and
`05_package_serve` take it as `bundle_path`.
"""),
    ("code", """
from kit.ui import write_results

bundle_path = bundle.save(Path(output_dir) / "bundle")
written = write_results(output_dir, {
    "notebook": "01_data_train", "smoke": smoke, "task": bundle.task,
    "primary_metric": bundle.primary_metric, "metrics": bundle.metrics,
    "bundle_path": str(bundle_path.resolve()), "artifacts": {"bundle": str(bundle_path.resolve())},
    "tags": {"data_hash": bundle.lineage["data_hash"]},
    "train": {"best_epoch": result.best_epoch, "epochs_run": len(result.history), "stopped": result.stopped},
})
print(written)
"""),
]

START = """
%matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import kit
from kit.train import train

if bundle_path:
    bundle = kit.ModelBundle.load(bundle_path)
    data_config = kit.DataConfig.from_dict(bundle.configs["data"])
    print(f"continuing from {bundle_path}: {bundle!r}")
else:
    data_config = kit.DataConfig(source=data)
    bundle = train(data_config, kit.TrainConfig(epochs=15 if smoke else 200)).bundle
    print(f"trained a fresh model on {data}: {bundle!r}")
"""
"""The cell that loads ``bundle_path`` or, when it is empty, trains a model on ``data`` (standalone runs)."""

BUNDLE_PARAMS = """
bundle_path: str = ""  # a saved bundle to continue from (e.g. 01_data_train's); empty: train one on `data`
data: str = "breast_cancer"  # dataset used when bundle_path is empty
"""

TUNE = [
    ("md", """
# 02 · Tuning with Optuna

Search the network's hyperparameters (depth, width, dropout, learning rate, weight decay, batch
size) with Optuna. Every trial trains on the same split; unpromising trials are **pruned** after a
few epochs. The study lives in a SQLite file by default; give `storage` a PostgreSQL URL and many
machines can work on one study (`kit tune-worker`). Running again with the same `study_name`
resumes it.
"""),
    ("params", BUNDLE_PARAMS + """
n_trials: int = 20  # finished trials the study should hold (a re-run resumes up to this)
timeout: float = 0.0  # stop starting trials after this many seconds (0: no limit)
pruner: str = "median"  # median, hyperband or none
storage: str = ""  # empty: a SQLite file in output_dir; or an SQLAlchemy URL (postgresql+psycopg2://...)
study_name: str = ""  # empty: kit-<data>-<metric>
trial_epochs: int = 60  # maximum epochs per trial
smoke: bool = False  # 3 short trials, for CI
output_dir: str = "../runs/02_tune"  # where the study, the tuned bundle and results.json go
"""),
    ("code", START),
    ("md", """
## Run the study

`tune()` starts from the bundle's training config (the search space overrides some fields) and
returns the study, the best parameters and the best configuration retrained into a bundle.
"""),
    ("code", """
import logging

import optuna

from kit.tune import tune

optuna.logging.set_verbosity(logging.WARNING)
base = kit.TrainConfig.from_dict(bundle.configs["train"]).replace(epochs=8 if smoke else trial_epochs,
                                                                   patience=5 if smoke else 15)
result = tune(data_config, n_trials=3 if smoke else n_trials, timeout=timeout or None, pruner=pruner,
              storage=storage or None, study_name=study_name or None, config=base,
              run_dir=Path(output_dir) / "study")
print(f"study {result.study.study_name} ({result.storage}): {result.counts()}")
print(f"best trial {result.best_trial}: {result.metric} = {result.best_value:.4f}")
result.best_params
"""),
    ("md", """
## Trials

Each row is one trial: its state (COMPLETE or PRUNED), its validation value and its parameters.
The plot shows how the best value improved as the sampler learned where to look.
"""),
    ("code", """
trials = result.study.trials_dataframe(attrs=("number", "state", "value", "params", "duration"))
display(trials.round(5))
done = trials[trials["state"] == "COMPLETE"]
best = done["value"].cummax() if result.direction == "maximize" else done["value"].cummin()
fig, ax = plt.subplots(figsize=(6, 3))
ax.scatter(done["number"], done["value"], label="trial")
ax.step(done["number"], best, where="post", color="C3", label="best so far")
ax.set_xlabel("trial")
ax.set_ylabel(f"valid {result.metric}")
ax.legend()
plt.show()
"""),
    ("md", """
## Tuned versus starting model

The best configuration was retrained on the same split; compare its test metrics with the model
we started from.
"""),
    ("code", """
tuned = result.bundle
display(pd.DataFrame({"start": bundle.metrics["test"], "tuned": tuned.metrics["test"]}).round(4))
plots_path = result.save_plots(Path(output_dir) / "tuning_plots.html")
bundle_out = tuned.save(Path(output_dir) / "bundle")
"""),
    ("code", """
from kit.ui import write_results

write_results(output_dir, {
    "notebook": "02_tune", "smoke": smoke, "task": tuned.task, "primary_metric": tuned.primary_metric,
    "metrics": tuned.metrics, "start_metrics": bundle.metrics,
    "tuning": result.summary(), "bundle_path": str(bundle_out.resolve()),
    "artifacts": {"bundle": str(bundle_out.resolve()), "plots": str(plots_path.resolve())},
    "tags": {"study": result.study.study_name, "storage": result.storage},
})
"""),
]

EXPLAIN = [
    ("md", """
# 03 · Explaining predictions with SHAP

Which features drive the model, and why did it predict *this* for *this* row? `explain()` computes
SHAP values per original feature (one-hot columns are summed back into their feature) and checks
that they add up to the model output. It picks the method itself (DeepLIFT when exact, else
gradient or permutation) and says why.
"""),
    ("params", BUNDLE_PARAMS + """
rows: int = 200  # test rows to explain
background_size: int = 100  # training rows the explanation is relative to
method: str = "auto"  # auto, deep, gradient, permutation or kernel
smoke: bool = False  # fewer rows, for CI
output_dir: str = "../runs/03_explain"  # where plots, the bundle and results.json go
"""),
    ("code", START),
    ("code", """
from kit.explain import attach, explain
from kit.quantize import evaluation_rows

X_test, y_test, X_train = evaluation_rows(bundle)  # the bundle's own test split, rebuilt from its config
ex = explain(bundle, X_test.head(20 if smoke else rows), background=X_train,
             background_size=min(background_size, 50) if smoke else background_size, method=method)
print(ex)
print(ex.why)
"""),
    ("md", """
## Global importance

Mean absolute SHAP value per feature: how much each feature moves the output on average. The
beeswarm shows the direction too (colour = the feature's value).
"""),
    ("code", """
Path(output_dir).mkdir(parents=True, exist_ok=True)
fig = ex.plot_bar(max_display=12)
fig.savefig(Path(output_dir) / "importance.png")
display(fig)
display(ex.plot_beeswarm(max_display=12))
"""),
    ("md", """
## One row

The waterfall starts at the average output (the base value) and adds each feature's contribution
until it reaches this row's output.
"""),
    ("code", """
print(f"row 0: output {ex.outputs[0]:.3f} = base {ex.base_values[0]:.3f} + {ex.values[0].sum():.3f}")
display(ex.plot_waterfall(0, max_display=10))
display(ex.plot_dependence())
"""),
    ("md", """
## Keep the explanation with the model

`attach()` stores the background rows and the ranking in the bundle, so the served model can
explain a request (`/explain`) without any extra file.
"""),
    ("code", """
from kit.ui import write_results

explained = attach(bundle, ex)
bundle_out = explained.save(Path(output_dir) / "bundle")
top = ex.importance().head(5)
write_results(output_dir, {
    "notebook": "03_explain", "smoke": smoke, "task": bundle.task, "primary_metric": bundle.primary_metric,
    "metrics": bundle.metrics, "explanation": {**ex.section(), "rows": len(ex.values)},
    "top_features": top["feature"].tolist(), "bundle_path": str(bundle_out.resolve()),
    "artifacts": {"bundle": str(bundle_out.resolve()),
                  "importance_plot": str((Path(output_dir) / "importance.png").resolve())},
    "tags": {"method": ex.method},
})
top
"""),
]

QUANTIZE = [
    ("md", """
# 04 · Quantization and runtimes

The same network can run as eager PyTorch, as an ONNX graph on ONNX Runtime, with int8 weights
(dynamic or statically calibrated) or in fp16. `compare()` builds each variant and measures
accuracy, latency and size side by side; `select()` picks the fastest one whose metric drop stays
within your budget; `with_runtime()` puts it in the bundle (the ONNX file and its sha256 included).
"""),
    ("params", BUNDLE_PARAMS + """
variants: str = ""  # comma-separated variant names (torch-fp32, ort-fp32, ort-int8-dynamic, ...); empty: all
max_metric_drop: float = 0.005  # accuracy budget: largest accepted drop of the primary metric vs torch fp32
repeats: int = 300  # timed runs per batch size
smoke: bool = False  # fewer timing repeats, for CI
output_dir: str = "../runs/04_quantize"  # where the plot, the chosen bundle and results.json go
"""),
    ("code", START),
    ("code", """
from kit.quantize import compare, evaluation_rows, select

X_test, y_test, X_train = evaluation_rows(bundle)
names = [v.strip() for v in variants.split(",") if v.strip()] or None
n = 20 if smoke else repeats
report = compare(bundle, X_test, y_test, names, calibration=X_train, repeats=n, warmup=max(1, n // 10))
columns = ["status", "metric", "metric_drop", "label_agreement", "p50_batch1", "p99_batch1", "p50_batch64",
           "size_bytes", "size_ratio"]
report.frame[[c for c in columns if c in report.frame.columns]].round(4)
"""),
    ("md", """
## Latency against accuracy

Each point is a variant (marker area = file size); the dashed line is the Pareto front, the
variants no other beats on both latency and accuracy.
"""),
    ("code", """
Path(output_dir).mkdir(parents=True, exist_ok=True)
fig = report.plot()
fig.savefig(Path(output_dir) / "pareto.png")
display(fig)
"""),
    ("md", """
## Choose within a budget

The fastest variant whose metric drop is at most `max_metric_drop`; every other variant gets a
reason. The chosen bundle predicts through the same `predict` path as before.
"""),
    ("code", """
choice = select(report, max_metric_drop=max_metric_drop)
print(choice)
chosen = bundle.with_runtime(choice)
test_metrics = chosen.evaluate(X_test, y_test)
agreement = float((chosen.predict(X_test) == bundle.predict(X_test)).mean()) if bundle.task != "regression" else None
print(f"test metrics with {choice.variant}: {test_metrics}; agreement with fp32: {agreement}")
"""),
    ("code", """
from kit.ui import write_results

bundle_out = chosen.save(Path(output_dir) / "bundle")
write_results(output_dir, {
    "notebook": "04_quantize", "smoke": smoke, "task": chosen.task, "primary_metric": chosen.primary_metric,
    "metrics": {"valid": bundle.metrics.get("valid", {}), "test": test_metrics}, "fp32_metrics": bundle.metrics,
    "chosen": choice.variant, "reasons": choice.reasons, "agreement_with_fp32": agreement,
    "variants": report.summary()["variants"], "bundle_path": str(bundle_out.resolve()),
    "artifacts": {"bundle": str(bundle_out.resolve()),
                  "pareto_plot": str((Path(output_dir) / "pareto.png").resolve())},
    "tags": {"variant": choice.variant, "runtime": chosen.runtime_info["name"]},
})
"""),
]

PACKAGE = [
    ("md", """
# 05 · Gate, package and serve

Before a model ships it passes the **release gate** (metric floor, runtime drop, latency,
robustness, calibration, schema contract ...). Then it goes into the BentoML **model store**
(`name:version`, with labels and metadata that say how it was made), gets built into a **bento**,
and is **served** over HTTP. The service predicts through the same `bundle.predict` path as this
notebook, which the last cell checks.
"""),
    ("params", BUNDLE_PARAMS + """
name: str = ""  # model store name; empty: kit-<dataset>
gate: bool = True  # run the release gate first (packaging refuses a failing bundle)
force: bool = False  # package even if the gate fails (recorded in the store)
build: bool = True  # build a bento with the model baked in
serve: bool = True  # start a local server, send a test request, stop it
port: int = 0  # server port on 127.0.0.1 (0: any free port)
smoke: bool = False  # a short model when training here, for CI
output_dir: str = "../runs/05_package_serve"  # where the server log and results.json go
"""),
    ("code", START),
    ("code", """
from kit import gate as kit_gate

if gate:
    # smoke: fewer timing samples and noisy copies; the same checks and thresholds.
    gate_config = kit_gate.GateConfig(latency_samples=50, noise_repeats=1, explain_rows=20) if smoke else None
    bundle, gate_report = kit_gate.gate(bundle, config=gate_config)
    display(gate_report)
"""),
    ("md", """
## The model store

`save()` stores the bundle under a new version of `name`. Labels (task, dataset, runtime, gate)
make it findable; metadata keeps metrics, configs, lineage and the quantization summary.
"""),
    ("code", """
import re

from kit import package

store_name = name or "kit-" + re.sub(r"[^a-z0-9._-]+", "-", data_config.source.rsplit("/", 1)[-1].lower())
tag = package.save(bundle, store_name, force=force, reason="05_package_serve notebook" if force else None)
print("stored", tag)
pd.DataFrame(package.models(store_name)).head()
"""),
    ("code", """
bento = package.build(tag) if build else None
print("bento", bento)
"""),
    ("md", """
## Serve and send a request

`package.start()` runs `bentoml serve` on 127.0.0.1 and waits until it is ready. We send two
example rows to `/predict` and check that the answer equals the notebook's own predictions.
"""),
    ("code", """
import json
import socket
import urllib.request

response, matches, url = None, None, None
if serve:
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(output_dir) / "server.log", "ab") as log:
        server = package.start(tag, port=port, log=log)
        try:
            url = f"http://127.0.0.1:{port}"
            rows = bundle.example(2)
            req = urllib.request.Request(f"{url}/predict", data=json.dumps({"rows": rows}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as answer:
                response = json.loads(answer.read())
        finally:
            package.stop(server)
    matches = [str(r["prediction"]) for r in response] == [str(p) for p in bundle.predict(rows)]
    print(json.dumps(response, indent=1))
    print("served predictions equal the notebook's:", matches)
"""),
    ("code", """
from kit.ui import write_results

write_results(output_dir, {
    "notebook": "05_package_serve", "smoke": smoke, "task": bundle.task, "primary_metric": bundle.primary_metric,
    "metrics": bundle.metrics, "gate": bundle.sections.get("gate", {}).get("passed"),
    "served": {"url": url, "response": response, "matches_notebook": matches},
    "bundle_path": bundle_path or None, "artifacts": {},
    "tags": {"model": tag, **({"bento": bento} if bento else {})},
})
"""),
]

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "00_quickstart": QUICKSTART,
    "01_data_train": DATA_TRAIN,
    "02_tune": TUNE,
    "03_explain": EXPLAIN,
    "04_quantize": QUANTIZE,
    "05_package_serve": PACKAGE,
}
