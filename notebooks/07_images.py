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
# # 07 · Images: a CNN on a folder of pictures
#
# A folder whose sub-folders are class names holding PNG or JPEG files (the layout torchvision's
# `ImageFolder` made common) is all kit needs to train, explain, quantize and serve an image
# classifier, through the same `ModelBundle` and steps as a table:
#
# * `kit.load(folder)` detects the image task, decodes every file once with Pillow and keeps the
#   pixels as uint8 (bounded memory: height x width x channels bytes per image);
# * the built-in `cnn` builder sizes a small conv net from the image shape;
# * SHAP values are computed **per pixel** (DeepLIFT), drawn over the images;
# * static int8 quantization (calibrated on training images) is compared with fp32;
# * the service takes `{"rows": [{"image": "<base64 PNG>"}]}` and answers what this notebook answers.
#
# With no `data` given, the notebook writes scikit-learn's 8x8 digits as PNG files into class folders
# (nothing is downloaded) and works on that folder, as you would on yours.
#
# **How long:** 37 seconds for the full run on the shared 2-core CPU (load 2.4; one torch thread:
# writing 1,797 PNG files, 30 epochs, per-pixel SHAP, quantizing, a `bentoml serve` start and 270
# images over HTTP); `smoke=True` (8 epochs) took 27 seconds.

# %% tags=["parameters"]
# The data
data: str = ""  # a folder of class sub-folders of PNG/JPEG files; empty: the digits written as PNG files
image_size: int = 0  # resize every image to image_size x image_size; 0: keep the files' own (equal) size
# Training
epochs: int = 30  # maximum epochs; early stopping keeps the best
augment: bool = False  # light augmentation of training batches (random shifts of up to 1/8 of the image)
# The run
serve: bool = True  # serve the int8 model with bentoml and compare its answers with the notebook's
smoke: bool = False  # tiny settings (kit.config.SMOKE: 8 epochs), for CI
output_dir: str = ""  # where the images, bundles and results.json go; empty: runs/07_images in the project

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import kit
from kit.notebook import output_folder
from kit.preprocess import encode_png

output_dir = output_folder(output_dir, "07_images")
torch.set_num_threads(1)  # a small conv net trains faster on one thread of a busy CPU

# %% [markdown]
# ## 1. A folder of images
#
# Each class is a sub-folder; its name is the label. Here the folder is made from the digits, one
# PNG file per picture, so everything below reads real files.

# %%
if data:
    folder = Path(data)
else:
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = output_dir / "digits"
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        path = folder / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png(np.round(image * 255 / 16).astype(np.uint8)))
size = (image_size, image_size) if image_size else None
config = kit.DataConfig(source=str(folder), kind="image", image_size=size)  # kind: a folder of images, always
ds = kit.load(config)
print(f"{len(ds.frame)} images of {ds.image_size[0]}x{ds.image_size[1]}x{ds.channels} in {len(ds.label_names)} "
      f"classes; {ds.images.nbytes / 2**20:.2f} MB decoded")
ds.summary()

# %% [markdown]
# A grid of samples with their labels: the first thing to look at.

# %%
fig, axes = plt.subplots(2, 8, figsize=(10, 3))
for ax, i in zip(axes.ravel(), np.random.default_rng(0).choice(len(ds.frame), 16, replace=False), strict=True):
    pixels = ds.images[i]
    ax.imshow(pixels[..., 0] if ds.channels == 1 else pixels, cmap="gray")
    ax.set_title(ds.frame["label"].iloc[i], fontsize=9)
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# ## 2. Train the `cnn`
#
# `TrainConfig(net="cnn")` builds conv blocks (two 3x3 convolutions with batch norm, then a 2x2
# max-pool) while the image side stays at least 2 pixels (at most three blocks), a global average
# pool and a small head. Training reads batches from the uint8 pixels and normalizes each batch
# with the per-channel mean and std fitted on the training split. The baselines are fitted on the
# same split's flattened pixels.

# %%
from kit.train import train

train_config = kit.TrainConfig(net="cnn", epochs=epochs, patience=8, augment=("shift",) if augment else ())
result = train(ds, train_config.smoke_if(smoke))  # smoke: the tiny CI profile (kit.config.SMOKE)
bundle = result.bundle
print(bundle)
print(f"input {bundle.net.shape} (channels, height, width); stopped: {result.stopped} at epoch {result.best_epoch}")
result.baselines.table() if result.baselines else None

# %%
history = np.array([[h["epoch"], h["train_loss"], h["valid_loss"]] for h in result.history])
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(history[:, 0], history[:, 1], label="train loss")
ax.plot(history[:, 0], history[:, 2], label="validation loss")
ax.set_xlabel("epoch")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 3. Which pixels decide: SHAP per pixel
#
# `explain_images` runs DeepLIFT (every layer of the `cnn` has a rule) and checks that each image's
# values add up to the model's output. Red pixels push towards the explained class (the predicted
# one), blue away. The global map is the mean |SHAP| of each pixel over the explained images.

# %%
from kit import explain

test = result.splits.test
ex = explain.explain_images(bundle, test.X.head(8), background_size=50)
print(ex, ex.why, sep="\n")
truth = [bundle.label_names[i] for i in test.y[:8]]
display(ex.plot_overlay(6, truth=truth))  # the true label beside each prediction (red where they differ)

# %%
bundle = explain.attach_images(bundle, ex)  # the service's /explain answers from this background
display(ex.plot_global())

# %% [markdown]
# ## 4. Quantize: static int8 for the conv net
#
# Every ONNX variant is built from the export stored in the bundle; static int8 (QDQ) is
# calibrated on training images. `select` picks the fastest variant within the accuracy budget.

# %%
from kit import quantize

report = quantize.compare(bundle, config=kit.QuantizeConfig().smoke_if(smoke))
choice = quantize.select(report)
int8 = quantize.attach(bundle, "ort-int8-static", report=report)
print(choice)
report.summary()

# %% [markdown]
# ## 5. Serve base64 PNG images
#
# The int8 model goes to the model store and `bentoml serve`. Each request row is one image, base64
# encoded; the service decodes it when it checks the request, so a bad image is a 4xx naming its row.

# %%
import base64
import json
import socket
import urllib.request

from kit import package

test_X = result.splits.test.X
rows = [{"image": base64.b64encode(encode_png(p)).decode()} for p in test_X["image"]]
expected = int8.predict(test_X).tolist()
tag, matches = package.save(int8, "kit-07-images"), None
if serve:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(output_dir / "server.log", "ab") as log:
        server = package.start(tag, port=port, log=log)
        try:
            answers = []
            for start in range(0, len(rows), 100):
                req = urllib.request.Request(f"http://127.0.0.1:{port}/predict",
                                             data=json.dumps({"rows": rows[start:start + 100]}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as answer:
                    answers.extend(r["prediction"] for r in json.loads(answer.read()))
        finally:
            package.stop(server)
    matches = answers == expected
    print(f"{tag}: {len(rows)} test images over HTTP; equal to the notebook's predictions: {matches}")

# %% [markdown]
# ## 6. Score a folder offline
#
# `kit predict --bundle DIR FOLDER_OR_ZIP out.csv` (or `--tag`) does the same from a shell, with a
# progress bar: one line per file with the prediction and the probabilities.

# %%
bundle_path = int8.save(output_dir / "bundle")
summary = package.predict_file(bundle_path, folder, output_dir / "predictions.csv", progress=False)
print(f"scored {summary.scored} files -> {summary.output}")

# %%
from kit.results import notebook_results, write_results

written = write_results(output_dir, notebook_results(
    "07_images", bundle=int8, bundle_path=bundle_path, smoke=smoke,
    images={"count": len(ds.frame), "shape": list(bundle.net.shape), "classes": len(ds.label_names)},
    explanation={"method": ex.method, "additivity_error": ex.additivity_error},
    quantization={"chosen": choice.variant, "int8_static_drop": float(report.frame.loc["ort-int8-static",
                                                                                          "metric_drop"])},
    served={"tag": tag, "rows": len(rows), "matches_notebook": matches},
    batch={"scored": summary.scored, "output": summary.output},
))
print(written)
