"""Image datasets from real files: the ImageFolder layout, the digits_images built-in, and every refusal."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from _images import digit_pixels, write_digits
from PIL import Image

import kit
from kit import DataConfig, DataError
from kit.data import ImageDataset
from kit.preprocess import encode_png


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits(tmp_path_factory.mktemp("digits"))


def _png(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(pixels))


def test_a_folder_of_class_folders_loads_as_images_equal_to_the_builtin(digits_folder):
    ds = kit.load(digits_folder)
    builtin = kit.load("digits_images")
    assert isinstance(ds, ImageDataset) and isinstance(builtin, ImageDataset)
    assert (ds.task, ds.target, ds.label_names) == ("multiclass", "label", [str(d) for d in range(10)])
    assert ds.images.shape == (1797, 8, 8, 1) and ds.images.dtype == np.uint8
    # The folder is sorted by class, then file name; each file holds the digit of its index.
    pixels, labels = digit_pixels()
    order = [int(Path(f).stem) for f in ds.files]
    assert np.array_equal(ds.images[:, :, :, 0], pixels[order])
    assert list(ds.frame["label"]) == [labels[i] for i in order]
    assert np.array_equal(builtin.images[:, :, :, 0], pixels)
    # What was detected is recorded, so the bundle reloads the same pixels.
    assert (ds.config.kind, ds.config.channels, ds.config.image_size) == ("image", 1, None)
    assert kit.load(ds.config).data_hash == ds.data_hash


def test_splits_are_stratified_and_share_the_decoded_pixels(digits_folder):
    ds = kit.load(digits_folder)
    splits = ds.split()
    assert len(splits.train) + len(splits.valid) + len(splits.test) == 1797
    cell = splits.test.X["image"].iloc[0]
    assert cell.shape == (8, 8, 1) and np.shares_memory(cell, ds.images)
    assert ds.split().test.y.tolist() == splits.test.y.tolist()


def test_explicit_config_resizes_converts_and_records_the_policy(digits_folder):
    cfg = DataConfig(source=str(digits_folder), kind="image", image_size=(12, 10), channels=3, resize="pad")
    ds = kit.load(cfg)
    assert ds.images.shape == (1797, 12, 10, 3)
    assert (ds.sizes == [8, 8]).all()  # the files' own size, kept for drift
    # Grayscale repeated in RGB: the three channels are equal.
    assert np.array_equal(ds.images[..., 0], ds.images[..., 2])
    assert ds.config.resize == "pad"


def test_rgb_and_jpeg_files_are_detected_as_three_channels(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        for i in range(3):
            img = Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8))
            (tmp_path / label).mkdir(exist_ok=True)
            img.save(tmp_path / label / f"{i}.jpg", format="JPEG")
    ds = kit.load(tmp_path)
    assert ds.task == "binary" and ds.channels == 3 and ds.image_size == (6, 5)


@pytest.mark.parametrize("case", ["text", "truncated", "empty_class", "single_class", "no_images", "mixed"])
def test_bad_folders_get_one_error_naming_the_file(tmp_path, case):
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    _png(img, tmp_path / "a" / "1.png")
    _png(img, tmp_path / "b" / "1.png")
    named = None
    if case == "text":
        (tmp_path / "b" / "notes.txt").write_text("not a picture")
        named = "notes.txt"
    elif case == "truncated":
        data = encode_png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
        (tmp_path / "b" / "cut.png").write_bytes(data[: len(data) // 2])
        named = "cut.png"
    elif case == "empty_class":
        (tmp_path / "c").mkdir()
        named = "c"
    elif case == "single_class":
        for p in (tmp_path / "b").iterdir():
            p.unlink()
        (tmp_path / "b").rmdir()
        named = "single class"
    elif case == "no_images":
        tmp_path = tmp_path / "empty"
        tmp_path.mkdir()
        named = "no images"
    elif case == "mixed":
        _png(np.zeros((9, 8), dtype=np.uint8), tmp_path / "b" / "2.png")
        named = "b/2.png"
    with pytest.raises(DataError) as info:
        kit.load(tmp_path)
    assert named in str(info.value)
    assert info.value.file is not None or info.value.field is not None


def test_mixed_sizes_load_once_a_size_is_given(tmp_path):
    _png(np.zeros((8, 8), dtype=np.uint8), tmp_path / "a" / "1.png")
    _png(np.full((16, 12), 200, dtype=np.uint8), tmp_path / "b" / "1.png")
    ds = kit.load(DataConfig(source=str(tmp_path), image_size=(8, 8)))
    assert ds.images.shape == (2, 8, 8, 1) and ds.sizes.tolist() == [[8, 8], [16, 12]]


def test_memory_limit_is_checked_before_decoding(digits_folder):
    with pytest.raises(DataError, match="max_image_mb"):
        kit.load(DataConfig(source=str(digits_folder), image_size=(512, 512), max_image_mb=1))


def test_a_bomb_is_refused_from_its_header(tmp_path):
    # A 1-bit PNG of 20,000 x 20,000 pixels is a few kB on disk but 400 million pixels decoded.
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bomb.png").write_bytes(buffer.getvalue())
    _png(np.zeros((8, 8), dtype=np.uint8), tmp_path / "b" / "1.png")
    with pytest.raises(DataError, match=r"bomb\.png.*pixels"):
        kit.load(tmp_path)


def test_config_validates_image_fields():
    with pytest.raises(kit.ConfigError, match="image_size"):
        DataConfig(image_size=(0, 8))
    with pytest.raises(kit.ConfigError, match="channels"):
        DataConfig(channels=2)
    assert DataConfig.from_dict(DataConfig(image_size=(4, 5)).to_dict()).image_size == (4, 5)
    with pytest.raises(kit.ConfigError, match="augment"):
        kit.TrainConfig(augment=("rotate",))


def test_a_table_kind_refuses_a_folder(digits_folder):
    with pytest.raises(DataError):
        kit.load(DataConfig(source=str(digits_folder), kind="table", target="label"))
