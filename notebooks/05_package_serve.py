# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Gate, package and serve
#
# Before a model ships it passes the **release gate** (metric floor, runtime drop, latency,
# robustness, calibration, schema contract ...). Then it goes into the BentoML **model store**
# (`name:version`, with labels and metadata that say how it was made), gets built into a **bento**
# (a deployable folder with the service, the model and its dependencies), and is **served** over
# HTTP. The service predicts through the same `bundle.infer` path as this notebook, which the
# serving section checks.
#
# **How long:** about 15 seconds on breast_cancer on a 2-core CPU with a saved bundle (the gate,
# building the bento and starting the server take most of it); add about 10 seconds when the
# notebook trains its own model.

# %% tags=["parameters"]
# Where to start: a saved bundle, or data to train a new model on
bundle_path: str = ""  # a saved bundle (e.g. runs/04_quantize/bundle); empty: train a new model on `data`
data: str = "breast_cancer"  # used when bundle_path is empty: a built-in dataset or a CSV/Parquet path
target: str = ""  # target column of a CSV/Parquet `data`; empty for built-ins
# Gate and package
name: str = ""  # model store name; empty: kit-<dataset name>, e.g. kit-breast_cancer
gate: bool = True  # run the release gate first (packaging refuses a bundle whose gate failed)
force: bool = False  # package even if the gate fails (recorded in the store)
build: bool = True  # build a bento with the model baked in
# Serve
serve: bool = True  # start a local server, call it from Python and with curl, stop it
port: int = 0  # server port on 127.0.0.1 (0: any free port)
# The run
smoke: bool = False  # tiny settings (kit.config.SMOKE: fewer gate samples, 8 epochs when training here), for CI
output_dir: str = ""  # where the server log and results.json go; empty: runs/05_package_serve in the project

# %% [markdown]
# ## The model to start from
#
# `load_or_train()` returns the bundle saved at `bundle_path` (usually what `04_quantize` wrote,
# with its chosen runtime; `kit run` passes it along), or, when `bundle_path` is empty, trains a
# new model on `data` so this notebook also runs on its own.

# %%
import atexit
import json
import shlex

import httpx
import pandas as pd

import kit
from kit import package
from kit.gate import gate as run_gate
from kit.notebook import load_or_train, output_folder

output_dir = output_folder(output_dir, "05_package_serve")
bundle = load_or_train(bundle_path, data, target, smoke=smoke)

# %% [markdown]
# ## The release gate
#
# `gate()` runs every release check on the bundle's own test split, with the runtime it will be
# served with, and stores the report in (a copy of) the bundle; the model store refuses a bundle
# whose gate failed unless `force=True`, and records that it was forced. The table lists each
# check, its value, its limit and whether it passed; when one fails, the store cell below stops with
# the failing checks named (improve the model, or set `force=True` to package it anyway).
#
# The gate is skipped when `gate=False`: the bundle is then packaged with whatever gate report it
# already carries (none for a fresh model: the store labels it `gate: unchecked`).

# %%
if gate:
    gate_config = kit.GateConfig().smoke_if(smoke)  # smoke=True: fewer samples; the same checks and limits
    bundle, gate_report = run_gate(bundle, config=gate_config)
    display(gate_report)
else:
    print(f"gate=False: the gate did not run; the bundle's gate status is {bundle.gate_status!r}")

# %% [markdown]
# ## The model store
#
# `save()` stores the bundle as a new version of `name` in the BentoML model store
# (`$BENTOML_HOME`, `~/bentoml` by default). Labels (task, dataset, runtime, gate) make it
# findable; metadata keeps metrics, configs, lineage and the quantization summary. The default
# name, `package.default_name()`, is `kit-` and the dataset's name. The table lists every stored
# version of that name, newest first.

# %%
store_name = name or package.default_name(bundle.data_config.source)
tag = package.save(bundle, store_name, force=force, reason="05_package_serve notebook" if force else None)
print("stored", tag)
pd.DataFrame(package.models(store_name)).head()

# %% [markdown]
# ## The bento
#
# `build()` makes a bento: the service in `bentos/`, the kit library and this model version baked
# in. `bentoml containerize <bento tag>` turns it into a Docker image; `kit serve --bento <bento tag>`
# serves it. With `build=False` no bento is built (serving below runs the service from `bentos/`).

# %%
if build:
    bento = package.build(tag)
    print("built bento", bento)
else:
    bento = None
    print("build=False: no bento built")

# %% [markdown]
# ## Serve the model
#
# `package.start()` runs `bentoml serve` for the stored model in the background on 127.0.0.1 and
# returns once the server answers `/readyz`; its log goes to `server.log` in `output_dir`. To serve
# in the foreground from a terminal instead: `kit serve <tag> --port 3000`. With `serve=False` the
# cells of this section do nothing.

# %%
response, matches, url = None, None, None
if serve:
    port = port or package.free_port()
    url = f"http://127.0.0.1:{port}"
    with open(output_dir / "server.log", "ab") as log:
        server = package.start(tag, port=port, log=log)
    atexit.register(package.stop, server)  # stop it with the kernel, even if a cell below fails
    print(f"serving {tag} at {url}")

# %% [markdown]
# ### Call it from Python
#
# `POST /predict` takes `{"rows": [...]}`, one JSON object per row with the feature names as keys,
# and answers one prediction per row (with class probabilities for a classifier). We send the first
# two rows of the bundle's test split; the answer must equal this notebook's own predictions for
# them. (`bundle.example(n)` makes valid rows too: training medians and modes.) Every prediction
# also carries a `prediction_id`: the service logs it, and a label that arrives later is sent back
# with that id to `POST /feedback`, which is how live accuracy is measured (see the README's safe
# releases section). The response header `X-Kit-Model` names the version that answered.

# %%
if serve:
    rows = bundle.reload_data().splits.test.X.head(2).to_dict("records")  # one JSON object per row
    answer = httpx.post(f"{url}/predict", json={"rows": rows}, timeout=30)
    answer.raise_for_status()
    response = answer.json()
    matches = [r["prediction"] for r in response] == bundle.predict(rows).tolist()
    print("answered by", answer.headers.get("X-Kit-Model"))
    print(json.dumps(response, indent=1))
    print("served predictions equal the notebook's:", matches)

# %% [markdown]
# ### Call it from anywhere else
#
# Any program that speaks HTTP can call the model; here is a request for the first of those rows
# with `curl`, as you would type it in a terminal while the server runs. Bad input gets a 4xx answer naming the field
# and row, never a 500.

# %%
if serve:
    body = shlex.quote(json.dumps({"rows": rows[:1]}))  # the JSON body, quoted for the shell
    curl = f"curl -s -X POST {url}/predict -H 'Content-Type: application/json' -d {body}"
    print(curl)
    # !{curl}

# %% [markdown]
# ### Stop the server
#
# `package.stop()` stops the server and its worker processes.

# %%
if serve:
    package.stop(server)
    print(f"stopped the server at {url}")

# %% [markdown]
# ## Results
#
# `results.json` records the gate outcome, the store and bento tags and the served answer.

# %%
from kit.results import notebook_results, write_results

written = write_results(output_dir, notebook_results(
    "05_package_serve", bundle=bundle, bundle_path=bundle_path or None, smoke=smoke,
    gate=bundle.gate.passed if bundle.gate is not None else None,
    served={"url": url, "response": response, "matches_notebook": matches},
    tags={"model": tag, "bento": bento},
))
print(written)
