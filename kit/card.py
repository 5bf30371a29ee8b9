"""Model card: what a bundle is, how it was made and how far to trust it, in Markdown and HTML.

Everything comes from the bundle itself (its manifest sections), so a card can be written for
any saved bundle, also long after training::

    from kit.card import card, write_card

    card(bundle).markdown()                 # str
    write_card(bundle, "runs/bc/card")      # MODEL_CARD.md + model_card.html

Sections: overview, intended use and limits, data (with the input schema and, for a classifier,
the samples per class and split), images (image models only: input shape, channels, resize policy,
normalization, classes, the drift reference), metrics, baselines, network (builder, parameters,
source sha256 and text, the ONNX export check), training, tuning, explanations, quantization,
compression (the chosen candidate's size, speed-up and metric drop, and the frontier's other rows),
release gate, lineage. A section the bundle does not have says which step would add it (images:
left out for a table model). Both formats render from one list of blocks, so they never disagree.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit._card_blocks import Block, _absent, _fmt, _md, _pairs, _records
from kit._card_sections import class_counts, compression, images

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

MARKDOWN_FILE = "MODEL_CARD.md"
HTML_FILE = "model_card.html"
MAX_SCHEMA = 100
MAX_SOURCE = 200


@dataclass
class ModelCard:
    """A rendered-on-demand model card."""

    title: str
    blocks: list[Block]

    def markdown(self) -> str:
        """The card as GitHub-flavoured Markdown."""
        out: list[str] = []
        for b in self.blocks:
            if b.kind in ("h1", "h2"):
                out.append(f"{'#' if b.kind == 'h1' else '##'} {b.text}")
            elif b.kind == "p":
                out.append(b.text)
            elif b.kind == "list":
                out.append("\n".join(f"- {_md(i)}" for i in b.items))
            elif b.kind == "code":
                fence = "````" if "```" in b.text else "```"
                out.append(f"{fence}python\n{b.text.rstrip()}\n{fence}")
            else:
                out.append("\n".join([
                    "| " + " | ".join(_md(h) for h in b.headers) + " |",
                    "|" + "|".join("---" for _ in b.headers) + "|",
                    *("| " + " | ".join(_md(_fmt(v)) for v in row) + " |" for row in b.rows)]))
        return "\n\n".join(out) + "\n"

    def html(self) -> str:
        """The card as one self-contained HTML page (inline CSS, no scripts)."""
        body: list[str] = []
        for b in self.blocks:
            if b.kind in ("h1", "h2"):
                body.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
            elif b.kind == "p":
                body.append(f"<p>{html.escape(b.text)}</p>")
            elif b.kind == "list":
                body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
            elif b.kind == "code":
                body.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
            else:
                head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
                rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                               for row in b.rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}"
                f"</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

    def _repr_html_(self) -> str:
        page = self.html()
        return page[page.index("<body>") + len("<body>"): page.rindex("</body>")]


_CSS = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;line-height:1.45;color:#1f2328}"
        "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:3px 8px;"
        "text-align:left;vertical-align:top}th{background:#f6f8fa}h2{border-bottom:1px solid #d0d7de}"
        "pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:85%}")


# -- sections --------------------------------------------------------------------------------------
def _overview(b: ModelBundle) -> list[Block]:
    status = {"unchecked": "not run", "passed": "passed", "failed": "FAILED"}[b.gate_status]
    info = b.runtime_info
    rows = {"task": b.task, "target": b.target, "labels": b.label_names, "features": len(b.feature_names),
            "network": b.net.describe(),
            "runtime": f"{info.get('name')}/{info.get('variant', 'fp32')}", "release gate": status,
            "created": b.lineage.get("created_at"), "kit version": b.lineage.get("kit_version")}
    test = b.metrics.get("test", {})
    headline = b.primary_metric
    inputs = (f"{'x'.join(map(str, b.net.shape))} images (channels x height x width)" if b.kind == "image"
              else f"{len(b.feature_names)} features")
    text = (f"A {b.task} model predicting {b.target!r} from {inputs}"
            + (f"; test {headline} {test[headline]:.4f}." if headline in test else "."))
    return [Block("p", text), _pairs(rows)]


def _intended_use(b: ModelBundle) -> list[Block]:
    if b.kind == "image":
        items = ["Inputs are PNG or JPEG images (see Images below); a file that is not one, a truncated file, an "
                 "image over the pixel limit or a missing image is refused, never guessed at.",
                 "Predictions are only as representative as the training images: check drift (intensity and size "
                 "statistics against the stored reference) before trusting them on another camera or population."]
    else:
        items = [f"Inputs must follow the schema below; rows with missing or extra columns, text in numeric columns "
                 f"or unseen categories are refused (unknown_category={b.preprocessor.unknown_category!r}).",
                 "Predictions are only as representative as the training data: check drift (PSI against the stored "
                 "reference) before trusting them on a new population.",
                 "Missing values are imputed with training medians/modes; see the gate's missing-value robustness."]
    gate = b.gate
    if gate is not None:
        items += [f"Gate check {c.name} failed: {c.reason}" for c in gate.failed]
    n_test = gate.data.get("test_rows") if gate is not None else None
    if n_test is not None and n_test < 100:
        items.append(f"The test split has only {n_test} rows: metrics carry wide confidence intervals.")
    return [Block("list", items=items)]


def _data(b: ModelBundle) -> list[Block]:
    cfg = b.configs.get("data", {})
    lin = b.lineage
    rows = {"source": cfg.get("source", lin.get("data_name")), "rows": lin.get("data_rows"),
            "sha256": lin.get("data_hash"), "split (valid / test)": f"{cfg.get('valid_size')} / {cfg.get('test_size')}",
            "split seed": cfg.get("seed", lin.get("split_seed"))}
    schema = [{"feature": f["name"], "kind": f["kind"],
               "median or categories": f.get("median") if f["kind"] == "numeric" else f.get("categories",
                                                                                            f.get("format"))}
              for f in b.preprocessor.schema()]
    more = [Block("p", f"Schema: first {MAX_SCHEMA} of {len(schema)} features.")] if len(schema) > MAX_SCHEMA else []
    constant = b.preprocessor.constant_
    if constant:
        more.append(Block("p", "Left out of the features (a single value in the training rows; requests need not "
                               "send them): " + ", ".join(f"{k} = {_fmt(v)}" for k, v in constant.items()) + "."))
    balance = class_counts(b) if b.kind != "image" else []  # an image model's are in its Images section
    return [_pairs(rows), *more, _records(schema, limit=MAX_SCHEMA), *balance]


def _metrics(b: ModelBundle) -> list[Block]:
    if not b.metrics:
        return [_absent("metrics", "train with kit.train")]
    splits = list(b.metrics)
    names = list(dict.fromkeys(k for s in splits for k in b.metrics[s]))
    return [Block("table", headers=["metric", *splits], rows=[[n, *(b.metrics[s].get(n) for s in splits)]
                                                                 for n in names])]


def _training(b: ModelBundle) -> list[Block]:
    train = b.configs.get("train")
    if not train:
        return [_absent("training config", "train with kit.train")]
    run = {k: b.lineage.get(k) for k in ("best_epoch", "epochs_run", "stopped", "device")}
    return [_pairs({**train, **run}, skip=("extra",))]


def _network(b: ModelBundle) -> list[Block]:
    from kit.nets import SOURCE_ARTIFACT

    net = b.net
    export = b.spec.get("onnx") or {}
    check = ("not made yet (bundle.save makes it)" if not export else f"failed: {export['error']}" if "error" in export
             else f"{export.get('exporter')} exporter, opset {export.get('opset')}, max abs diff vs torch "
                  f"{_fmt(export.get('max_abs_diff'))} at batch sizes {_fmt(export.get('batch_sizes_checked'))}")
    shown_input = (f"image (channels, height, width) = {net.shape}" if net.input_shape
                   else f"{net.input} ({net.n_in} columns after preprocessing)")
    rows = {"builder": net.builder, "defined in": net.target, "parameters": net.params or "(defaults)",
            "builder defaults": net.defaults, "input": shown_input,
            "outputs": net.n_out, "source sha256": net.source_sha256 or "not recorded (older bundle)",
            "source recorded as": net.source_kind, "ONNX export": check}
    blocks = [Block("p", "The network is rebuilt by importing its builder (never from stored code); the torch runtime "
                         "refuses a builder whose source no longer has this sha256. The ONNX runtimes need no code."),
              _pairs(rows)]
    changes = b.lineage.get("code_changes") or []
    if changes:
        blocks.append(Block("list", items=[f"Loaded with a changed builder source ({c.get('current_sha256', '')[:12]} "
                                           f"instead of {c.get('recorded_sha256', '')[:12]}) on {c.get('at')}: "
                                           "allow_changed_code=True" for c in changes]))
    source = b.artifacts.get(SOURCE_ARTIFACT)
    if source:
        lines = source.decode("utf-8", errors="replace").splitlines()
        more = f"\n# ... {len(lines) - MAX_SOURCE} more lines in {SOURCE_ARTIFACT}" if len(lines) > MAX_SOURCE else ""
        blocks += [Block("p", f"Builder source ({SOURCE_ARTIFACT}):"),
                   Block("code", "\n".join(lines[:MAX_SOURCE]) + more)]
    return blocks


def _baselines(b: ModelBundle) -> list[Block]:
    section = b.baselines
    if section is None:
        return [_absent("baselines", "kit.train.train fits them unless baselines=False")]
    best, gap = section.best(), section.gap()
    text = f"Fitted on the same preprocessed split as the network ({section.rows.get('test')} test rows)."
    if best is not None and gap is not None:
        text += (f" Best baseline: {best[0]} ({section.metric} {best[1]:.4f}); the network "
                 f"{'trails it by' if gap > 0 else 'leads by'} {abs(gap):.4f}.")
    table = section.table()
    rows = [[name, *[row.get(c) for c in table.columns]] for name, row in table.to_dict("index").items()]
    return [Block("p", text), Block("table", headers=["model (test)", *map(str, table.columns)], rows=rows)]


def _tuning(b: ModelBundle) -> list[Block]:
    t = b.tuning
    if t is None:
        return [_absent("tuning", "kit tune / kit.tune.tune")]
    blocks = [_pairs({"study_name": t.study_name, "storage": t.storage, "metric": t.metric, "direction": t.direction,
                      "n_trials": t.n_trials, "best_trial": t.best_trial, "best_value": t.best_value,
                      "pruner": t.pruner, "sampler": t.sampler, "seed": t.seed})]
    if t.params:
        blocks += [Block("p", "Best parameters:"), _pairs(t.params)]
    return blocks


def _explanations(b: ModelBundle) -> list[Block]:
    e = b.explanation
    if e is None:
        return [_absent("explanation", "kit explain / kit.explain.attach")]
    text = (f"Global importance (mean |SHAP|) by the {e.method} explainer over {e.rows_explained} "
            f"rows, background of {e.background_size} ({e.background_kind}); output: {e.output}; "
            f"additivity error {_fmt(e.additivity_error)}.")
    return [Block("p", text), _records(e.importance[:15], ["feature", "mean_abs_shap"])]


def _quantization(b: ModelBundle) -> list[Block]:
    q = b.quantization
    if q is None:
        return [Block("p", "No quantization recorded: the model runs as fp32 PyTorch (kit quantize compares "
                      "ONNX Runtime variants).")]
    blocks = [Block("p", f"Chosen variant: {q.chosen} (metric {q.metric}, budget "
                         f"{_fmt(q.budget)}, objective {q.objective}).")]
    if q.reasons:
        blocks.append(Block("list", items=[str(r) for r in q.reasons]))
    variants = q.variants
    if variants:
        columns = ["variant", *[c for c in ("status", "metric", "metric_drop", "p50_batch1", "p99_batch1",
                                            "p50_batch64", "p99_batch64", "size_bytes") if any(
                                                c in (v or {}) for v in variants.values())]]
        rows = [{"variant": name, **(v or {})} for name, v in variants.items()]
        blocks += [Block("p", "Variants (latency in µs):"), _records(rows, columns)]
    return blocks


def _gate(b: ModelBundle) -> list[Block]:
    g = b.gate
    if g is None:
        return [_absent("release gate", "kit gate / kit.gate.check")]
    rows = [{"check": c.name, "status": c.status, "value": c.value, "limit": c.threshold, "reason": c.reason}
            for c in g.checks]
    data = g.data
    text = (f"The release gate {'passed' if g.passed else 'FAILED'} on {g.created_at} "
            f"({data.get('test_rows')} test rows of {data.get('name')}, split seed {data.get('split_seed')}).")
    return [Block("p", text), _records(rows)]


def _lineage(b: ModelBundle) -> list[Block]:
    shown = {k: v for k, v in b.lineage.items() if k != "class_counts"}  # a table of its own under Data or Images
    return [_pairs(shown)] if shown else [_absent("lineage", "train with kit.train")]


SECTIONS: tuple[tuple[str, Any], ...] = (
    ("Overview", _overview), ("Intended use and limits", _intended_use), ("Data", _data), ("Images", images),
    ("Metrics", _metrics), ("Baselines", _baselines), ("Network", _network), ("Training", _training),
    ("Tuning", _tuning), ("Explanations", _explanations), ("Quantization", _quantization),
    ("Compression", compression), ("Release gate", _gate), ("Lineage", _lineage),
)
"""Card sections in order: (heading, function of the bundle returning blocks; no blocks: no heading)."""


def card(bundle: ModelBundle, title: str | None = None) -> ModelCard:
    """Build the model card of ``bundle``.

    Args:
        bundle: Any bundle; sections it lacks say which step would add them.
        title: Defaults to "Model card: <data> (<task>)".
    """
    name = bundle.lineage.get("data_name") or bundle.configs.get("data", {}).get("source", "model")
    title = title or f"Model card: {name} ({bundle.task})"
    blocks = [Block("h1", title)]
    for heading, make in SECTIONS:
        made = make(bundle)
        if made:
            blocks += [Block("h2", heading), *made]
    return ModelCard(title, blocks)


def write_card(bundle: ModelBundle, directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``MODEL_CARD.md`` and ``model_card.html`` into ``directory`` (created).

    Returns:
        The two paths.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    c = card(bundle)
    (out / MARKDOWN_FILE).write_text(c.markdown(), encoding="utf-8")
    (out / HTML_FILE).write_text(c.html(), encoding="utf-8")
    return [out / MARKDOWN_FILE, out / HTML_FILE]
