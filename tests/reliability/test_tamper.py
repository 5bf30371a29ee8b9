"""Tamper: a changed byte in any stored file is refused by name, and no load path unpickles.

Every runtime variant this install can build (torch fp32 and the ONNX Runtime variants of
kit.quantize) is stored in the BentoML model store, with a SHAP background artifact too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from bentoml import models

from kit import explain, package
from kit.errors import IntegrityError
from kit.quantize import attach, compare

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def stored_variants(rel_home: dict[str, Any], bc_bundle) -> dict[str, str]:
    """Variant name -> store tag, for every variant that builds here."""
    data = bc_bundle.reload_data()
    X, y, train_x = data.splits.test.X, data.dataset.decode_target(data.splits.test.y), data.splits.train.X
    base = explain.attach(bc_bundle, explain.explain(bc_bundle, X.head(5), background=train_x, background_size=20))
    report = compare(base, X, y, calibration=train_x, repeats=3, warmup=1)
    built = [str(name) for name, row in report.frame.iterrows() if row["status"] == "ok"]
    assert {"torch-fp32", "ort-fp32", "ort-int8-dynamic"} <= set(built), report.frame["status"].to_dict()
    return {name: package.save(attach(base, name, report=report), f"tamper-{name}") for name in built}


def flip(path: Path) -> bytes:
    """Flip the lowest bit of the middle byte; returns the original content."""
    data = path.read_bytes()
    i = len(data) // 2
    path.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1:])
    return data


def test_one_changed_byte_in_any_stored_file_is_refused_by_name(stored_variants: dict[str, str], ledger) -> None:
    tried, failures = 0, []
    for variant, tag in stored_variants.items():
        root = Path(models.get(tag).path)
        files = sorted(p for p in root.iterdir() if p.is_file() and p.name != "model.yaml")  # model.yaml: BentoML's
        names = {p.name for p in files}
        assert {"bundle.json", "bundle.json.sha256", "weights.safetensors", "preprocessor.json"} <= names
        assert variant == "torch-fp32" or f"model.{variant}.onnx" in names
        for file in files:
            original = flip(file)
            tried += 1
            try:
                package.load(tag)
                failures.append(f"{variant}: a changed {file.name} was loaded")
            except IntegrityError as exc:
                # the error names the file in its message and its `file` field; a changed checksum
                # file cannot be told from a changed manifest, so both name the manifest
                name = file.name.removesuffix(".sha256")
                if name not in exc.message or not str(exc.file).endswith(name):
                    failures.append(f"{variant}: changed {file.name} refused as {exc.message!r} (file={exc.file})")
            finally:
                file.write_bytes(original)
        package.load(tag)  # restored: loads again
    ledger.record("tamper", tried=tried, failures=len(failures), variants=len(stored_variants))
    assert not failures, "\n".join(failures)


TRAP = textwrap.dedent('''
    import json, pickle, _pickle, sys

    class PickleUsed(Exception):
        pass

    def trap(*args, **kwargs):
        raise PickleUsed("pickle reached from a load path")

    class Unpickler:
        def __init__(self, *args, **kwargs):
            trap()

    for module in (pickle, _pickle):
        module.load = module.loads = trap
        module.Unpickler = Unpickler
    try:
        pickle.loads(pickle.dumps(1))
    except PickleUsed:
        pass
    else:
        sys.exit("the pickle trap is not armed")

    import numpy as np
    np_load = np.load
    def safe_np_load(*args, allow_pickle=False, **kwargs):
        if allow_pickle:
            trap()
        return np_load(*args, allow_pickle=False, **kwargs)
    np.load = safe_np_load

    import torch
    torch_load = torch.load
    def safe_torch_load(*args, weights_only=None, **kwargs):
        if weights_only is not True:
            trap()
        return torch_load(*args, weights_only=True, **kwargs)
    torch.load = torch.serialization.load = safe_torch_load
    try:
        torch.load("unused.pt")
    except PickleUsed:
        pass
    else:
        sys.exit("the torch.load trap is not armed")

    from kit import package
    from kit.bundle import ModelBundle
    from kit.serving import ServedModel

    tags = json.loads(sys.argv[1])
    out = {}
    for variant, tag in tags.items():
        bundle = package.load(tag)                      # store -> ModelBundle.load, hash-verified
        rows = bundle.example(3)
        served = ServedModel(bundle, tag)               # what bentos/service.py builds
        predicted = served.predict_rows(rows)
        explained = served.explain(rows[:1])            # loads the stored SHAP background
        again = ModelBundle.load(bundle.save(sys.argv[2] + "/" + variant))
        same = again.predict(rows).tolist() == bundle.predict(rows).tolist()
        out[variant] = {"runtime": bundle.runtime_info["name"], "rows": len(predicted),
                        "explained": len(explained) > 0, "same": same}
    print(json.dumps(out))
''')


def test_no_pickle_on_any_load_path(stored_variants: dict[str, str], tmp_path: Path, ledger) -> None:
    proc = subprocess.run([sys.executable, "-c", TRAP, json.dumps(stored_variants), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ledger.record("no_pickle", tried=len(stored_variants), failures=len(stored_variants) - len(result),
                  variants=",".join(result))
    assert set(result) == set(stored_variants)
    for variant, row in result.items():
        assert row["rows"] == 3 and row["explained"] and row["same"], (variant, row)
    # the ONNX variants really ran on onnxruntime, not silently on torch
    assert result["ort-int8-dynamic"]["runtime"] == "onnxruntime"
