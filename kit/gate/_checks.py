"""The individual release checks behind :func:`kit.gate.check` (one function per check).

Each ``check_<name>(ctx)`` measures one property of the bundle on the held-out test split in
``ctx`` and returns a :class:`~kit.gate.Check` with its value, threshold and a reason sentence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit import metrics as km
from kit.config import DEFAULT_BUDGET, GateConfig
from kit.errors import ConfigError, SchemaError
from kit.metrics import expected_calibration_error
from kit.sections import Check

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.data import Dataset, Part


@dataclass
class Context:
    """What every check reads: the bundle, thresholds, data splits and a seeded generator."""

    bundle: ModelBundle
    config: GateConfig
    dataset: Dataset
    test: Part
    train: Part
    y_raw: np.ndarray
    metric: str
    rng: np.random.Generator


def _score(ctx: Context, bundle: ModelBundle, X: pd.DataFrame, y_raw: np.ndarray) -> float:
    return bundle.evaluate(X, y_raw)[ctx.metric]


def _better(metric: str, a: float, b: float) -> bool:
    """Whether ``a`` is at least as good as ``b``."""
    return a >= b if km.HIGHER_IS_BETTER[metric] else a <= b


# -- the checks ------------------------------------------------------------------------------------
def _check_metric(ctx: Context) -> Check:
    value = _score(ctx, ctx.bundle, ctx.test.X, ctx.y_raw)
    floor, source = ctx.config.metric_floor, "the configured floor"
    if floor is None:
        floor, source = _baseline(ctx), "the trivial baseline on the same split"
    n = len(ctx.test)
    # Without a floor the model must beat the baseline strictly; matching it means it learned nothing.
    ok = _better(ctx.metric, value, floor) and (ctx.config.metric_floor is not None or value != floor)
    cmp = ">=" if km.HIGHER_IS_BETTER[ctx.metric] else "<="
    return Check("metric", ok, value, floor,
                 f"test {ctx.metric} {value:.4f} {'' if ok else 'not '}{cmp} {floor:.4f} ({source}; {n} test rows)")


def _baseline(ctx: Context) -> float:
    """Metric of predicting the training majority class, or the training mean."""
    n = len(ctx.test)
    if ctx.bundle.task == "regression":
        pred = np.full(n, float(np.mean(ctx.train.y)))
        return km.regression(np.asarray(ctx.y_raw, dtype=np.float64), pred)[ctx.metric]
    k = len(ctx.bundle.label_names or [])
    prior = np.bincount(ctx.train.y, minlength=k) / len(ctx.train.y)
    proba = np.tile(prior, (n, 1))
    return km.classification(ctx.test.y, proba)[ctx.metric]


def _check_baseline(ctx: Context) -> Check:
    """The network against the best baseline a data scientist tries first, on the same test split."""
    from kit.baselines import fit_baselines

    limit = ctx.config.max_baseline_gap
    source = "GateConfig.max_baseline_gap" if limit is not None else "the shared budget"
    limit = DEFAULT_BUDGET if limit is None else limit
    section = ctx.bundle.baselines
    same_rows = (section is not None and ctx.bundle.lineage.get("data_hash") == ctx.dataset.data_hash
                 and section.rows.get("test") == len(ctx.test) and ctx.metric in section.network.get("test", {}))
    fitted = "recorded at training"
    if not same_rows:
        section = fit_baselines(ctx.train, {"test": ctx.test}, ctx.bundle.preprocessor, ctx.bundle.task,
                                {}, seed=ctx.config.seed)
        fitted = "fitted now on the train split"
    assert section is not None
    higher = km.HIGHER_IS_BETTER[ctx.metric]
    scores = {n: float(m["test"][ctx.metric]) for n, m in section.models.items() if ctx.metric in m.get("test", {})}
    if not scores:
        return Check("baseline", True, None, limit, f"no baseline reports {ctx.metric}", skipped=True)
    best = max(scores, key=lambda n: scores[n] if higher else -scores[n])
    value = _score(ctx, ctx.bundle, ctx.test.X, ctx.y_raw)
    gap = scores[best] - value if higher else value - scores[best]
    ok = gap <= limit
    warn = not ok and ctx.config.baseline_action == "warn"
    shown = ", ".join(f"{n} {v:.4f}" for n, v in scores.items())
    reason = (f"network {ctx.metric} {value:.4f} vs best baseline {best} {scores[best]:.4f} ({shown}; {fitted}): "
              f"{'trails by' if gap > 0 else 'leads by'} {abs(gap):.4f}, {'within' if ok else 'beyond'} {limit} "
              f"({source})")
    if warn:
        reason = f"warning: {reason}; baseline_action='warn' lets it pass"
    return Check("baseline", ok or warn, gap, limit, reason, warning=warn,
                 details={"network": value, "baselines": scores, "best": best, "action": ctx.config.baseline_action})


def _check_runtime_drop(ctx: Context) -> Check:
    info = ctx.bundle.runtime_info
    name = f"{info.get('name')}/{info.get('variant', 'fp32')}"
    limit, source = _budget(ctx)
    if info.get("name") == "torch" and info.get("variant", "fp32") == "fp32":
        return Check("runtime_drop", True, 0.0, limit,
                     "the runtime is fp32 torch, the reference itself: the drop is 0 by construction")
    fp32, what = _reference_score(ctx)
    chosen = _score(ctx, ctx.bundle, ctx.test.X, ctx.y_raw)
    drop = fp32 - chosen if km.HIGHER_IS_BETTER[ctx.metric] else chosen - fp32
    quant = ctx.bundle.quantization
    recorded = quant.metric_drop if quant is not None else None
    note = f"; quantization recorded {recorded:.4f}" if recorded is not None else ""
    ok = drop <= limit
    return Check("runtime_drop", ok, drop, limit,
                 f"{name} {ctx.metric} {chosen:.4f} vs {what} {fp32:.4f}: drop {drop:.4f} "
                 f"{'<=' if ok else '>'} {limit} ({source}){note}", details={"fp32": fp32, "runtime": chosen})


def _reference_score(ctx: Context) -> tuple[float, str]:
    """The fp32 reference's metric: torch, or the stored fp32 ONNX graph where torch cannot run here."""
    from kit.errors import BuilderError, DependencyError
    from kit.quantize._export import ONNX_ARTIFACT, stored_graph
    from kit.runtime import OnnxRuntime

    reference = ctx.bundle.copy()
    reference.runtime_info = {"name": "torch", "variant": "fp32"}
    try:
        return _score(ctx, reference, ctx.test.X, ctx.y_raw), "fp32 torch"
    except (BuilderError, DependencyError) as exc:
        stored = stored_graph(ctx.bundle)
        if stored is None:
            raise
        reference.set_runtime(OnnxRuntime(reference, model=stored[0]))
        return (_score(ctx, reference, ctx.test.X, ctx.y_raw),
                f"the stored fp32 ONNX graph ({ONNX_ARTIFACT}; fp32 torch could not run: {exc.message})")


def _budget(ctx: Context) -> tuple[float, str]:
    """The accuracy budget of the runtime check, and where it comes from."""
    if ctx.config.max_metric_drop is not None:
        return ctx.config.max_metric_drop, "GateConfig.max_metric_drop"
    quant = ctx.bundle.quantization
    if quant is not None and quant.budget is not None:
        return float(quant.budget), "the budget it was quantized with"
    return DEFAULT_BUDGET, "the default budget"


def _check_latency(ctx: Context) -> Check:
    records = ctx.test.X.to_dict("records")
    n = ctx.config.latency_samples
    for i in range(20):
        ctx.bundle.infer(records[i % len(records)])
    times = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        ctx.bundle.infer([records[i % len(records)]])
        times[i] = time.perf_counter() - start
    p50, p99 = (float(np.percentile(times, q) * 1e3) for q in (50, 99))
    limit = ctx.config.max_p99_ms
    ok = p99 <= limit
    info = ctx.bundle.runtime_info
    return Check("latency_p99", ok, p99, limit,
                 f"p99 {p99:.3f} ms (p50 {p50:.3f} ms) over {n} one-record bundle.infer calls with "
                 f"{info.get('name')}/{info.get('variant', 'fp32')}: {'within' if ok else 'over'} {limit} ms",
                 details={"p50_ms": p50, "p99_ms": p99, "samples": n})


def _subset(ctx: Context) -> pd.DataFrame:
    X = ctx.test.X
    if len(X) > ctx.config.max_rows:
        X = X.iloc[np.sort(ctx.rng.choice(len(X), ctx.config.max_rows, replace=False))]
    return X.reset_index(drop=True)


def _changed(ctx: Context, base: Any, other: Any) -> np.ndarray:
    """Per row: 1.0 if the label flipped (classification), or ``|change| / target std`` (regression)."""
    if ctx.bundle.task == "regression":
        std = (ctx.bundle.target_scaling or {}).get("std") or float(np.std(ctx.y_raw)) or 1.0
        return np.asarray(np.abs(other.values - base.values) / std, dtype=np.float64)
    flipped: np.ndarray = np.asarray(other.labels, dtype=object) != np.asarray(base.labels, dtype=object)
    return flipped.astype(np.float64)


def _describe(ctx: Context, rate: float) -> str:
    if ctx.bundle.task == "regression":
        return f"predictions moved by {rate:.3f} target std on average"
    return f"{rate:.2%} of predictions flipped"


def _check_noise(ctx: Context) -> Check:
    X = _subset(ctx)
    pre = ctx.bundle.preprocessor
    numeric = [c for c in pre.feature_names_in_ if pre.kinds_[c] == "numeric"]
    limit = ctx.config.max_noise_flip_rate
    if not numeric:
        return Check("noise_robustness", True, None, limit, "no numeric features to perturb", skipped=True)
    base = ctx.bundle.infer(X)
    rates = []
    for _ in range(ctx.config.noise_repeats):
        noisy = X.copy()
        for c in numeric:
            values = noisy[c].to_numpy(dtype=np.float64)
            noisy[c] = values + ctx.rng.normal(0.0, ctx.config.noise_scale * pre.scales_[c], len(values))
        rates.append(float(_changed(ctx, base, ctx.bundle.infer(noisy)).mean()))
    rate = float(np.mean(rates))
    ok = rate <= limit
    return Check("noise_robustness", ok, rate, limit,
                 f"{_describe(ctx, rate)} with N(0, ({ctx.config.noise_scale} x std)^2) noise "
                 f"on {len(numeric)} numeric features ({ctx.config.noise_repeats} x {len(X)} rows)")


def _check_missing(ctx: Context) -> Check:
    if ctx.bundle.kind == "image":
        return Check("missing_robustness", True, None, ctx.config.max_missing_flip_rate,
                     "not run: an image model imputes nothing (a missing image is refused, naming the row)",
                     skipped=True)
    X = _subset(ctx)
    names = ctx.bundle.feature_names
    base = ctx.bundle.infer(X)
    blocks = []
    for c in names:
        block = X.copy()
        block[c] = np.nan if ctx.bundle.preprocessor.kinds_[c] == "numeric" else None
        blocks.append(block)
    out = ctx.bundle.infer(pd.concat(blocks, ignore_index=True))
    changed = _changed(ctx, _tile(base, len(names)), out).reshape(len(names), len(X))
    per_feature = changed.mean(axis=1)
    rate = float(changed.mean())
    worst = names[int(per_feature.argmax())]
    limit = ctx.config.max_missing_flip_rate
    ok = rate <= limit
    return Check("missing_robustness", ok, rate, limit,
                 f"{_describe(ctx, rate)} with one feature missing ({len(names)} features x {len(X)} rows); "
                 f"most sensitive: {worst!r} ({per_feature.max():.3g})",
                 details={"per_feature": dict(zip(names, per_feature.tolist(), strict=True))})


def _tile(pred: Any, times: int) -> Any:
    from kit.prediction import Prediction

    if pred.values is not None:
        return Prediction(values=np.tile(pred.values, times))
    return Prediction(labels=list(pred.labels) * times)


def _check_calibration(ctx: Context) -> Check:
    limit = ctx.config.max_ece
    if ctx.bundle.task == "regression":
        return Check("calibration", True, None, limit, "not applicable: regression model", skipped=True)
    proba = ctx.bundle.infer(ctx.test.X).probabilities
    assert proba is not None
    ece = expected_calibration_error(ctx.test.y, proba, ctx.config.ece_bins)
    ok = ece <= limit
    return Check("calibration", ok, ece, limit,
                 f"expected calibration error {ece:.4f} {'<=' if ok else '>'} {limit} "
                 f"({ctx.config.ece_bins} bins, {len(ctx.test)} test rows)")


def _check_slices(ctx: Context) -> Check:
    column, limit = ctx.config.slice_column, ctx.config.max_slice_gap
    if column is None:
        return Check("slice_gap", True, None, limit, "no slice column given (GateConfig.slice_column)", skipped=True)
    if column not in ctx.bundle.feature_names:
        raise ConfigError(f"slice column {column!r} is not a feature; features: "
                          f"{', '.join(ctx.bundle.feature_names)}", field="slice_column")
    values = ctx.test.X[column].astype(object).where(ctx.test.X[column].notna(), "<missing>").astype(str)
    if values.nunique() > 50:
        raise ConfigError(f"slice column {column!r} has {values.nunique()} distinct values in the test split; "
                          "choose a categorical column", field="slice_column")
    scores: dict[str, float] = {}
    small: list[str] = []
    for value, rows in values.groupby(values).groups.items():
        idx = values.index.get_indexer(rows)
        if len(idx) < ctx.config.min_slice_rows:
            small.append(str(value))
            continue
        scores[str(value)] = _score(ctx, ctx.bundle, ctx.test.X.iloc[idx], ctx.y_raw[idx])
    left_out = f"; left out (< {ctx.config.min_slice_rows} rows): {', '.join(small)}" if small else ""
    if len(scores) < 2:
        return Check("slice_gap", True, None, limit, f"fewer than two slices of {column!r} are large enough"
                     f"{left_out}", skipped=True, details={"slices": scores})
    gap = max(scores.values()) - min(scores.values())
    ok = gap <= limit
    shown = ", ".join(f"{k}={v:.3f}" for k, v in sorted(scores.items()))
    return Check("slice_gap", ok, gap, limit, f"{ctx.metric} across {column!r}: {shown}; gap {gap:.4f} "
                 f"{'<=' if ok else '>'} {limit}{left_out}", details={"slices": scores})


def _check_schema(ctx: Context) -> Check:
    bundle = ctx.bundle
    problems: list[str] = []
    example = bundle.example(2)
    again = json.loads(json.dumps(example))
    if again != example:
        problems.append("the example changes through JSON")
    if json.loads(json.dumps(bundle.schema)) != bundle.schema:
        problems.append("the schema changes through JSON")
    for feature in bundle.schema["features"]:
        value = example[0].get(feature["name"])
        if feature["kind"] == "numeric" and not isinstance(value, int | float):
            problems.append(f"example {feature['name']!r} is not a number")
        if feature["kind"] == "categorical" and value not in feature["categories"]:
            problems.append(f"example {feature['name']!r} is not one of its categories")
    first, second = bundle.infer(example), bundle.infer(again)
    if first.to_dict() != second.to_dict():
        problems.append("predictions differ after the JSON round trip")
    name = bundle.feature_names[0]
    problems += _refused(lambda: bundle.infer([{k: v for k, v in example[0].items() if k != name}]), name, "missing")
    numeric = [f["name"] for f in bundle.schema["features"] if f["kind"] == "numeric"]
    if numeric:
        problems += _refused(lambda: bundle.infer([{**example[0], numeric[0]: "not a number"}]), numeric[0], "text")
    ok = not problems
    return Check("schema_contract", ok, len(problems), 0,
                 "example validates, round-trips through JSON with equal predictions; missing and mistyped "
                 "fields are refused by name" if ok else "; ".join(problems))


def _refused(call: Callable[[], Any], name: str, what: str) -> list[str]:
    try:
        call()
    except SchemaError as exc:
        return [] if exc.field == name else [f"a {what} {name!r} was refused naming {exc.field!r}"]
    return [f"a record with {what} {name!r} was accepted"]


def _check_explanations(ctx: Context) -> Check:
    limit, k = ctx.config.min_topk_agreement, ctx.config.top_k
    try:
        from kit.explain import explain
    except ModuleNotFoundError as exc:
        if exc.name not in ("kit.explain", "shap"):
            raise
        return Check("explanation_stability", True, None, limit, f"not run: {exc.name} is not available",
                     skipped=True)
    train_X = ctx.train.X.reset_index(drop=True)
    size = min(ctx.config.background_size, len(train_X) // 2)
    order = ctx.rng.permutation(len(train_X))
    backgrounds = [train_X.iloc[order[:size]], train_X.iloc[order[size:2 * size]]]
    rows = ctx.test.X.iloc[: ctx.config.explain_rows]
    tops = []
    for background in backgrounds:
        if ctx.bundle.kind == "image":  # the pixels with the largest mean |SHAP|
            from kit.explain import explain_images

            mean_map = explain_images(ctx.bundle, rows, background=background, background_size=size).global_map()
            top = np.argsort(-mean_map.ravel(), kind="stable")[:k]
            tops.append([f"pixel(y={i // mean_map.shape[1]}, x={i % mean_map.shape[1]})" for i in top.tolist()])
            continue
        ranking = explain(ctx.bundle, rows, background=background).importance()
        tops.append([str(f) for f in ranking["feature"].tolist()[:k]])
    k_eff = min(k, len(tops[0]))
    agreement = len(set(tops[0]) & set(tops[1])) / k_eff
    ok = agreement >= limit
    return Check("explanation_stability", ok, agreement, limit,
                 f"top-{k_eff} SHAP features agree {agreement:.0%} across two disjoint backgrounds of {size} "
                 f"train rows ({len(rows)} test rows explained): {tops[0]} vs {tops[1]}",
                 details={"top_a": tops[0], "top_b": tops[1]})


RUNNERS: dict[str, Callable[[Context], Check]] = {
    "metric": _check_metric, "baseline": _check_baseline, "runtime_drop": _check_runtime_drop,
    "latency_p99": _check_latency,
    "noise_robustness": _check_noise, "missing_robustness": _check_missing, "calibration": _check_calibration,
    "slice_gap": _check_slices, "schema_contract": _check_schema, "explanation_stability": _check_explanations,
}
