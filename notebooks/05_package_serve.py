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
# (`name:version`, with labels and metadata that say how it was made), gets built into a **bento**,
# and is **served** over HTTP. The service predicts through the same `bundle.predict` path as this
# notebook, which the last cell checks.

# %% tags=["parameters"]
bundle_path: str = ""  # a saved bundle to continue from (e.g. 01_data_train's); empty: train one on `data`
data: str = "breast_cancer"  # dataset used when bundle_path is empty

name: str = ""  # model store name; empty: kit-<dataset>
gate: bool = True  # run the release gate first (packaging refuses a failing bundle)
force: bool = False  # package even if the gate fails (recorded in the store)
build: bool = True  # build a bento with the model baked in
serve: bool = True  # start a local server, send a test request, stop it
port: int = 0  # server port on 127.0.0.1 (0: any free port)
smoke: bool = False  # a short model when training here, for CI
output_dir: str = "../runs/05_package_serve"  # where the server log and results.json go

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import kit
from kit.train import train

if bundle_path:
    bundle = kit.ModelBundle.load(bundle_path)
    print(f"continuing from {bundle_path}: {bundle!r}")
else:
    train_config = kit.TrainConfig().smoke() if smoke else kit.TrainConfig()
    bundle = train(kit.DataConfig(source=data), train_config, progress=True).bundle
    print(f"trained a fresh model on {data}: {bundle!r}")
data_config = bundle.data_config

# %%
from kit import gate as kit_gate

if gate:
    gate_config = kit.GateConfig()
    gate_config = gate_config.smoke() if smoke else gate_config  # fewer samples; the same checks and thresholds
    bundle, gate_report = kit_gate.gate(bundle, config=gate_config)
    display(gate_report)

# %% [markdown]
# ## The model store
#
# `save()` stores the bundle under a new version of `name`. Labels (task, dataset, runtime, gate)
# make it findable; metadata keeps metrics, configs, lineage and the quantization summary.

# %%
import re

from kit import package

store_name = name or "kit-" + re.sub(r"[^a-z0-9._-]+", "-", data_config.source.rsplit("/", 1)[-1].lower())
tag = package.save(bundle, store_name, force=force, reason="05_package_serve notebook" if force else None)
print("stored", tag)
pd.DataFrame(package.models(store_name)).head()

# %%
bento = package.build(tag) if build else None
print("bento", bento)

# %% [markdown]
# ## Serve and send a request
#
# `package.start()` runs `bentoml serve` on 127.0.0.1 and waits until it is ready. We send two
# example rows to `/predict` and check that the answer equals the notebook's own predictions.

# %%
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

# %%
from kit.results import notebook_results, write_results

write_results(output_dir, notebook_results(
    "05_package_serve", bundle=bundle, bundle_path=bundle_path or None, smoke=smoke,
    gate=bundle.gate.passed if bundle.gate is not None else None,
    served={"url": url, "response": response, "matches_notebook": matches},
    tags={"model": tag, **({"bento": bento} if bento else {})},
))
