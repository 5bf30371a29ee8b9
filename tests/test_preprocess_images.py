"""The image preprocessor: decoding every accepted input form, normalization, JSON state, and bad rows named."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from kit import NotFittedError, Preprocessor, SchemaError
from kit.preprocess import ImagePreprocessor, encode_png

rng = np.random.default_rng(0)
TRAIN = rng.integers(0, 256, (20, 6, 5, 3), dtype=np.uint8)


def b64(pixels: np.ndarray) -> str:
    return base64.b64encode(encode_png(pixels)).decode()


def test_refuses_to_transform_before_fit():
    with pytest.raises(NotFittedError):
        ImagePreprocessor().transform(TRAIN)


def test_normalizes_per_channel_with_training_statistics():
    pre = ImagePreprocessor().fit(TRAIN)
    assert pre.input_shape == (3, 6, 5) and pre.resize_ == "none"
    x = pre.transform(TRAIN)
    assert x.shape == (20, 3, 6, 5) and x.dtype == np.float32
    # On the training images every channel has mean 0 and std 1.
    assert np.allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-5) and np.allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    expected = (TRAIN[..., 1] / 255.0 - pre.mean_[1]) / pre.std_[1]
    assert np.allclose(x[:, 1], expected, atol=1e-6)


def test_every_input_form_gives_the_same_batch(tmp_path):
    pre = ImagePreprocessor().fit(TRAIN)
    path = tmp_path / "a.png"
    path.write_bytes(encode_png(TRAIN[0]))
    forms = [
        TRAIN[:1],
        [{"image": TRAIN[0]}],
        [{"image": b64(TRAIN[0])}],
        [{"image": "data:image/png;base64," + b64(TRAIN[0])}],
        [{"image": encode_png(TRAIN[0])}],
        [{"image": path}],
        {"image": b64(TRAIN[0])},
    ]
    ref = pre.transform(TRAIN[:1])
    for form in forms:
        assert np.array_equal(pre.transform(form), ref)


def test_state_round_trips_through_json_and_the_tabular_entry_point():
    pre = ImagePreprocessor(image_size=(4, 4), channels=1, resize="pad").fit(TRAIN)
    state = json.loads(pre.to_json())
    again = Preprocessor.from_dict(state)
    assert isinstance(again, ImagePreprocessor)
    assert again.to_dict() == pre.to_dict()
    assert np.array_equal(again.transform(TRAIN), pre.transform(TRAIN))
    assert pre.schema()[0]["resize"] == "pad" and pre.transform([pre.example()]).shape == (1, 1, 4, 4)


def test_resize_policies_at_predict_time():
    stretch = ImagePreprocessor(image_size=(6, 5)).fit(TRAIN)
    big = np.kron(TRAIN[0], np.ones((2, 2, 1), dtype=np.uint8))  # 12 x 10: each pixel twice as wide and tall
    assert stretch.transform([{"image": b64(big)}]).shape == (1, 3, 6, 5)
    fixed = ImagePreprocessor().fit(TRAIN)
    with pytest.raises(SchemaError, match=r"row 0.*12x10.*6x5") as info:
        fixed.transform([{"image": b64(big)}])
    assert (info.value.field, info.value.row) == ("image", 0)


@pytest.mark.parametrize(("value", "words"), [
    ("not base64 at all!", "base64"),
    (base64.b64encode(b"plain text").decode(), "not a PNG or JPEG"),
    (12, "type int"),
])
def test_bad_rows_are_named(value, words):
    pre = ImagePreprocessor().fit(TRAIN)
    rows = [{"image": b64(TRAIN[0])}, {"image": value}]
    with pytest.raises(SchemaError, match=words) as info:
        pre.transform(rows)
    assert info.value.row == 1


def test_a_bomb_and_a_truncated_image_are_refused_by_row():
    pre = ImagePreprocessor(max_pixels=10_000).fit(TRAIN)
    buffer = io.BytesIO()
    Image.new("L", (200, 200)).save(buffer, format="PNG")
    with pytest.raises(SchemaError, match=r"row 0.*pixels"):
        pre.transform([{"image": base64.b64encode(buffer.getvalue()).decode()}])
    data = encode_png(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8))
    with pytest.raises(SchemaError, match="row 0"):
        pre.transform([{"image": base64.b64encode(data[:200]).decode()}])


def test_wrong_fields_are_named():
    pre = ImagePreprocessor().fit(TRAIN)
    with pytest.raises(SchemaError, match="missing column 'image'"):
        pre.transform([{"picture": b64(TRAIN[0])}])
    with pytest.raises(SchemaError, match="unexpected column 'extra'"):
        pre.transform([{"image": b64(TRAIN[0]), "extra": 1}])
