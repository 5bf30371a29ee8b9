"""Model card sections for image models, class balance and compression (:mod:`kit.card` lists them in order).

* ``Images`` (image bundles only): the input shape, channels, the resize policy, the normalization
  mean/std, the pixel limit, the classes with their samples per split, and the drift reference
  (percentiles of the per-image statistics the service compares requests with).
* ``Compression``: what ``kit compress`` chose among smaller networks x runtimes (its size, speed-up
  against the original in eager torch fp32, metric drop, and every other candidate of the
  frontier), or, for a bundle only quantized, the same figures for its runtime variants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kit._card_blocks import Block, _absent, _fmt, _pairs, _records

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

CHANNELS = {1: "1 (grayscale: Pillow's L conversion, ITU-R 601-2 luma)",
            3: "3 (RGB: an alpha channel is dropped, a grayscale image repeated)"}
DRIFT_NAMES = {"mean": "mean intensity", "std": "intensity std", "height": "file height (px)",
               "width": "file width (px)"}


def _resize(policy: str, size: Sequence[int]) -> str:
    h, w = size
    return {"none": f"none: every image must be {h}x{w} (the training files were one size); another size is refused",
            "stretch": f"stretch: another size is resized bilinearly to {h}x{w} (the aspect ratio is not kept)",
            "pad": f"pad: scaled bilinearly to fit {h}x{w}, keeping the aspect ratio, centred on black",
            }.get(policy, policy)


def class_counts(b: ModelBundle) -> list[Block]:
    """Samples per class in each split (recorded at training), or a line saying they were not recorded."""
    counts = b.lineage.get("class_counts")
    if not isinstance(counts, Mapping):
        return [] if b.task == "regression" else [Block("p", "Samples per class: not recorded (a bundle trained "
                                                            "before kit recorded them).")]
    parts = [p for p in ("train", "valid", "test") if p in counts]
    rows = [[label, *(counts[p][i] for p in parts), sum(counts[p][i] for p in parts)]
            for i, label in enumerate(counts["labels"])]
    rows.append(["all", *(sum(counts[p]) for p in parts), sum(sum(counts[p]) for p in parts)])
    return [Block("p", "Samples per class and split:"), Block("table", headers=["class", *parts, "total"], rows=rows)]


def images(b: ModelBundle) -> list[Block]:
    """The ``Images`` section (an empty list for a table model: the card leaves the heading out)."""
    if b.kind != "image":
        return []
    pre: Any = b.preprocessor
    names = ["L"] if pre.channels_ == 1 else ["R", "G", "B"]
    rows = {"input (channels, height, width)": list(pre.input_shape), "channels": CHANNELS.get(pre.channels_),
            "resize policy": _resize(pre.resize_, pre.image_size_),
            "normalization": "pixels / 255, then (x - mean) / std per channel, fitted on the training split",
            "mean": {n: f"{m:.6g}" for n, m in zip(names, pre.mean_, strict=True)},
            "std": {n: f"{s:.6g}" for n, s in zip(names, pre.std_, strict=True)},
            "formats": "PNG and JPEG (base64 in requests; files, a folder or a ZIP for kit predict)",
            "max pixels": f"{pre.max_pixels:,} (a larger image is refused from its header, before decoding)",
            "classes": b.label_names}
    return [_pairs(rows), *class_counts(b), *_drift_reference(b.reference)]


def _drift_reference(reference: Mapping[str, Any]) -> list[Block]:
    rows = []
    for name, ref in reference.items():
        parts = name.split(".")
        quantiles = ref.get("quantiles") or []
        if parts[0] != "image" or len(quantiles) != 101:
            continue
        what = DRIFT_NAMES.get(parts[1], parts[1]) + (f" ({parts[2]})" if len(parts) > 2 else "")
        rows.append([what, name, ref.get("n"), quantiles[1], quantiles[10], quantiles[50], quantiles[90],
                     quantiles[99]])
    if not rows:
        return [Block("p", "Drift reference: none recorded (drift cannot be measured for this bundle).")]
    return [Block("p", "Drift reference: per-image statistics of the training images (intensity 0-255 from the "
                       "training split, file sizes from every file). The service summarizes each request's images "
                       "the same way and compares them with these (PSI on /drift, KS tests in the release status)."),
            Block("table", headers=["statistic", "name", "images", "p1", "p10", "median", "p90", "p99"], rows=rows)]


# -- compression ----------------------------------------------------------------------------------
def _speedup(reference: Mapping[str, Any], row: Mapping[str, Any], column: str) -> float | None:
    base, value = reference.get(column), row.get(column)
    if isinstance(base, int | float) and isinstance(value, int | float) and value > 0:
        return float(base) / float(value)
    return None


def _frontier(rows: Sequence[Mapping[str, Any]], reference: Mapping[str, Any], chosen: str) -> Block:
    table = []
    for row in rows:
        table.append({"candidate": row["name"] + (" (chosen)" if row["name"] == chosen else ""),
                      "status": row.get("status"), "metric": row.get("metric"), "metric drop": row.get("metric_drop"),
                      "test metric": row.get("test_metric"), "test drop": row.get("test_metric_drop"),
                      "p50 batch 1 (µs)": row.get("p50_batch1"), "p50 batch 64 (µs)": row.get("p50_batch64"),
                      "speed-up b1": _speedup(reference, row, "p50_batch1"),
                      "speed-up b64": _speedup(reference, row, "p50_batch64"),
                      "size (bytes)": row.get("size_bytes"), "size ratio": row.get("size_ratio"),
                      "parameters": row.get("parameters")})
    columns = [c for c in table[0] if any(r[c] is not None for r in table)]
    return _records(table, columns, limit=len(table))


def _chosen(row: Mapping[str, Any], reference: Mapping[str, Any], reference_name: str) -> dict[str, Any]:
    up1, up64 = _speedup(reference, row, "p50_batch1"), _speedup(reference, row, "p50_batch64")
    speed = (f"{up1:.2f}x at batch 1, {up64:.2f}x at batch 64 (p50 {_fmt(row.get('p50_batch1'))} and "
             f"{_fmt(row.get('p50_batch64'))} µs)" if up1 is not None and up64 is not None else "not measured")
    size = row.get("size_bytes")
    out = {"size": f"{size:,} bytes (size ratio {_fmt(row.get('size_ratio'))})" if isinstance(size, int) else size,
           f"speed-up vs {reference_name}": speed, "metric": row.get("metric"),
           "metric drop (positive = worse)": row.get("metric_drop")}
    if row.get("test_metric") is not None:  # kit compress: chosen on validation, reported on test
        out.update({"test metric": row.get("test_metric"), "test metric drop": row.get("test_metric_drop")})
    return out


def compression(b: ModelBundle) -> list[Block]:
    """The ``Compression`` section: ``kit compress``'s frontier, else ``kit quantize``'s variants, else absent."""
    report = b.sections.get("compression")
    if isinstance(report, Mapping) and report.get("rows"):
        return _compressed(report)
    q = b.quantization
    if q is None or not q.variants:
        return [_absent("compression", "kit compress searches smaller networks and int8 graphs under the accuracy "
                                       "budget; kit quantize compares runtime variants of this one")]
    rows = [{"name": name, **(v or {})} for name, v in q.variants.items()]
    reference_name = q.baseline or "torch-fp32"
    reference = next((r for r in rows if r["name"] == reference_name), {})
    chosen = next((r for r in rows if r["name"] == q.chosen), None)
    text = (f"kit quantize compared {len(rows)} runtime variants of this network on the test split under the "
            f"budget {_fmt(q.budget)} ({q.metric}); chosen: {q.chosen}. Speed-ups and sizes are against "
            f"{reference_name} from the same run; size ratio: {reference_name}'s size over the variant's.")
    blocks = [Block("p", text)]
    if chosen is not None:
        blocks.append(_pairs({"chosen": q.chosen, **_chosen(chosen, reference, reference_name)}))
    return [*blocks, Block("p", "Every variant:"), _frontier(rows, reference, q.chosen)]


def _compressed(report: Mapping[str, Any]) -> list[Block]:
    rows = [{**r, "name": r["variant"], "p50_batch1": r.get("p50_batch1_us"), "p50_batch64": r.get("p50_batch64_us")}
            for r in report["rows"]]
    reference_name = str(report.get("settings", {}).get("reference", "original/torch-fp32"))
    reference = next((r for r in rows if r["name"] == reference_name), {})
    chosen_name = str(report.get("chosen"))
    chosen = next((r for r in rows if r["name"] == chosen_name), {})
    settings = report.get("settings", {})
    text = (f"kit compress measured {len(rows)} candidates (smaller networks x runtimes) on the same rows under "
            f"the budget {_fmt(report.get('budget'))} ({report.get('metric')}); chosen: {chosen_name}. The choice "
            "uses the validation split (metric, metric drop); the test split (test metric, test drop) was not "
            "chosen on, so it is the unbiased figure. "
            f"Speed-ups are against {reference_name} from the same run ({settings.get('threads')} thread(s), "
            f"{settings.get('repeats')} repeats, load average {_fmt(settings.get('loadavg'))}); size ratio: the "
            "original's fp32 ONNX graph over the candidate's.")
    made = " → ".join(str(step) for step in chosen.get("lineage") or [])
    pairs = {"chosen": chosen_name, "made by": made, "parameters": chosen.get("parameters"),
             **_chosen(chosen, reference, reference_name)}
    blocks = [Block("p", text), _pairs(pairs), Block("p", "The frontier (every candidate):"),
              _frontier(rows, reference, chosen_name)]
    skipped = [str(s) for s in report.get("skipped") or []]
    if skipped:
        blocks += [Block("p", "Not tried:"), Block("list", items=skipped)]
    return blocks
