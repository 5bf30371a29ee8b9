"""An image model served over real HTTP: base64 PNG rows equal in-process predictions, uploads, bad images named.

One `bentoml serve` of a cnn trained on the digits written as PNG files; the whole test split is
sent as base64 PNG rows and must get exactly the in-process answers.
"""

from __future__ import annotations

import base64
import io
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from _images import write_digits
from _server import Server, serving, use_bentoml_home
from PIL import Image

import kit
import kit.release
from kit import package
from kit.preprocess import encode_png
from kit.train import train

pytestmark = [pytest.mark.server, pytest.mark.slow]


def b64(pixels: np.ndarray) -> str:
    return base64.b64encode(encode_png(pixels)).decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = write_digits(tmp_path_factory.mktemp("digit_pngs"))
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_images_train.py: a busy 2-core machine
    try:
        # image_size given: another size is resized ("stretch"), as a service for photos would be
        result = train(kit.DataConfig(source=str(folder), image_size=(8, 8)),
                       kit.TrainConfig(net="cnn", epochs=12, patience=4), baselines=False)
    finally:
        torch.set_num_threads(saved)
    home = tmp_path_factory.mktemp("bentoml_home")
    use_bentoml_home(home)
    from kit import explain

    bundle = explain.attach_images(result.bundle, explain.explain_images(result.bundle, rows=4, background_size=20))
    tag = package.save(bundle, "digits-cnn")
    package.promote(tag, "image service test")
    env = {"KIT_MAX_ROWS": "100", "KIT_MAX_BODY_BYTES": "200000", "KIT_WORKERS": "1", "KIT_DRIFT_WINDOW": "500"}
    with serving(None, home, env=env) as server:
        yield {"server": server, "result": result, "bundle": bundle, "folder": folder,
               "store": kit.release.store_url(home / "kit_release.db")}


def post(server: Server, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def test_base64_png_predictions_equal_in_process_for_the_whole_test_split(served):
    bundle = served["bundle"]
    test_x = served["result"].splits.test.X
    expected = bundle.infer(test_x)
    rows = [{"image": b64(p)} for p in test_x["image"]]
    got: list[dict[str, Any]] = []
    for start in range(0, len(rows), 50):
        response = post(served["server"], "/predict", {"rows": rows[start:start + 50]})
        assert response.status_code == 200, response.text
        got.extend(response.json())
    assert [g["prediction"] for g in got] == expected.labels
    proba = np.array([[g["probabilities"][k] for k in bundle.label_names] for g in got])
    np.testing.assert_allclose(proba, expected.probabilities, rtol=0, atol=1e-6)
    meta = httpx.get(served["server"].url + "/metadata", timeout=30).json()
    assert meta["schema"]["kind"] == "image" and meta["schema"]["features"][0]["name"] == "image"
    deadline = time.monotonic() + 30  # the log: each image as its fingerprint, never the picture
    while len(logged := kit.release.predictions("digits-cnn", served["store"])) < len(rows) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(logged) == len(rows)
    assert all(r["inputs"]["image"].startswith("image 8x8 sha256:") for r in logged), logged[0]["inputs"]


@pytest.mark.parametrize(("value", "words"), [
    ("%%% not base64", "base64"),
    (base64.b64encode(b"just some text").decode(), "not a PNG or JPEG"),
    (base64.b64encode(encode_png(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8))[:-40]).decode(),
     "truncated"),
    (None, "base64 PNG or JPEG string"),
])
def test_bad_images_get_a_4xx_naming_the_row(served, value, words):
    good = {"image": b64(np.zeros((8, 8), dtype=np.uint8))}
    response = post(served["server"], "/predict", {"rows": [good, {"image": value}]})
    assert response.status_code in (400, 422), response.text
    body = response.json()
    assert body["row"] == 1 and body["field"] == "image" and words in body["message"]


def test_a_decompression_bomb_and_an_oversized_body_are_refused(served):
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # 400 million pixels in a few kB
    response = post(served["server"], "/predict", {"rows": [{"image": base64.b64encode(buffer.getvalue()).decode()}]})
    assert response.status_code in (400, 422) and "pixels" in response.json()["message"]
    big = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # > the 200 kB body limit
    response = post(served["server"], "/predict", {"rows": [{"image": b64(big)}]})
    assert response.status_code == 413


@pytest.mark.parametrize("slow", ["predict", "predict_file"])
def test_a_slow_image_request_does_not_stall_small_ones(served, slow):
    url = served["server"].url
    buffer = io.BytesIO()
    Image.new("L", (6000, 6000), 128).save(buffer, format="PNG")  # 48 kB, but 36 million pixels to inflate
    big = buffer.getvalue()
    small = {"rows": [{"image": b64(np.zeros((8, 8), dtype=np.uint8))}]}

    def timed(path: str, **body: Any) -> tuple[httpx.Response, float, float]:
        start = time.perf_counter()
        response = httpx.post(url + path, timeout=120, **body)
        return response, start, time.perf_counter()

    if slow == "predict":  # three such rows: under the 200 kB body limit
        send: dict[str, Any] = {"json": {"rows": [{"image": base64.b64encode(big).decode()}] * 3}}
    else:  # a ZIP of five, uploaded
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            for i in range(5):
                z.writestr(f"big{i}.png", big)
        send = {"files": {"file": ("big.zip", archive.getvalue(), "application/zip")}}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(timed, "/" + slow, **send)
        time.sleep(0.2)  # the slow request is being read or decoded
        answered = []
        while not pending.done():
            response, start, end = timed("/predict", json=small)
            assert response.status_code == 200, response.text
            answered.append((start, end))
    response, big_start, big_end = pending.result()
    assert response.status_code == 200, response.text
    assert len(response.json() if slow == "predict" else response.text.strip().splitlines()) in (3, 6)
    # Decoding the big images (seconds of Pillow work) runs in the worker's decode pool (/predict) or in
    # BentoML's thread without the model lock (/predict_file), so the one worker kept answering small
    # requests meanwhile; decoded on the event loop, or under the model lock, none could finish until it ended.
    during = [end - start for start, end in answered if end < big_end]
    assert len(during) >= 3, (len(during), big_end - big_start)
    assert sorted(during)[len(during) // 2] < (big_end - big_start) / 4, (during, big_end - big_start)


def test_predict_file_scores_a_zip_and_one_image_as_csv(served):
    import pandas as pd

    bundle = served["bundle"]
    folder: Path = served["folder"]
    files = sorted(folder.rglob("*.png"))[:30]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, path.relative_to(folder).as_posix())
    response = httpx.post(served["server"].url + "/predict_file", timeout=60,
                          files={"file": ("digits.zip", buffer.getvalue(), "application/zip")})
    assert response.status_code == 200, response.text
    frame = pd.read_csv(io.StringIO(response.text), dtype={"prediction": str})
    assert frame["file"].tolist() == [p.relative_to(folder).as_posix() for p in files]
    assert frame["prediction"].tolist() == list(bundle.predict([{"image": p} for p in files]))
    one = httpx.post(served["server"].url + "/predict_file", timeout=60,
                     files={"file": ("x.png", files[0].read_bytes(), "image/png")})
    assert one.status_code == 200 and len(pd.read_csv(io.StringIO(one.text))) == 1
    bad = httpx.post(served["server"].url + "/predict_file", timeout=60,
                     files={"file": ("x.png", b"not an image", "image/png")})
    assert bad.status_code in (400, 422) and "not a PNG or JPEG" in bad.json()["message"]


def test_drift_compares_image_statistics_with_the_training_reference(served):
    rows = [{"image": b64(np.full((8, 8), 255, dtype=np.uint8))} for _ in range(100)]  # white squares: drift
    for _ in range(4):  # most of the 500-row window
        assert post(served["server"], "/predict", {"rows": rows}).status_code == 200
    report = httpx.get(served["server"].url + "/drift", timeout=30).json()
    assert {"image.mean.L", "image.std.L", "image.height", "image.width"} <= set(report["psi"])
    assert report["psi"]["image.mean.L"] > 1.0 and "image.mean.L" in report["drifted"]
    # Every image had the training size: no drift there.
    assert report["psi"]["image.height"] < 0.1 and "image.height" not in report["drifted"]


def test_explain_answers_per_pixel_maps_as_nested_arrays(served):
    pixels = np.stack(served["result"].splits.test.X["image"].iloc[:2].to_numpy())
    response = post(served["server"], "/explain", {"rows": [{"image": b64(p)} for p in pixels]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "deep" and len(body["rows"]) == 2
    shap_map = np.array(body["rows"][0]["shap"])
    assert shap_map.shape == (1, 8, 8)
    assert abs(shap_map.sum() + body["rows"][0]["base_value"] - body["rows"][0]["output"]) < 1e-3
