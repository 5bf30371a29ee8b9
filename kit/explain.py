"""SHAP explanations of kit models: global and local, in the original feature space, additivity checked.

    from kit.explain import explain, attach
    ex = explain(bundle, test_rows, background=train_rows)     # method="auto"
    ex.importance()                                            # mean |SHAP| ranking
    ex.plot_beeswarm(); ex.plot_waterfall(0)                   # matplotlib Figures
    bundle = attach(bundle, ex)                                # stores background + ranking
    explain(bundle, few_rows)                                  # later: the stored background

**What is explained** (documented once, see :mod:`kit.explain_engines`): regression explains the
predicted value in target units; classification explains, by default, the chosen class's *logit*:
the log-odds ``log p_c - log p_other`` for two classes, the centered logit ``log p_c - mean_k log p_k``
for more. Logits are what the network computes, SHAP values on them add up exactly (DeepLIFT is exact
on a linear head), and they do not saturate near 0/1. ``output="probability"`` explains ``p_c``
instead; additivity is then measured against ``p_c``.

**Method choice** (``method="auto"``): DeepExplainer (shap's DeepLIFT rules, run for all rows in
one batched pass) when the bundle runs on torch and every layer has a rule. It is kept when
``|sum(values) + base - output| <= tolerance * scale`` on every row (``scale`` is the target's
standard deviation for regression, 1 otherwise). Otherwise GradientExplainer, then permutation
sampling of Shapley values (model-agnostic: it calls ``bundle.infer``, so it also explains ONNX or
int8 runtimes). ``Explanation.why`` records each step of that choice.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit import explain_engines as engines
from kit.errors import ConfigError, DataError, IntegrityError, SchemaError

if TYPE_CHECKING:
    import argparse

    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle

BACKGROUND_ARTIFACT = "explain_background.json"
SECTION = "explanation"
METHODS = ("auto", *engines.ENGINES)
OUTPUTS = ("logit", "probability")


@dataclass
class Explanation:
    """SHAP values of some rows, in the original feature space.

    Attributes:
        values: SHAP values, shape (rows, features); one-hot columns summed into their feature.
        base_values: Expected explained output over the background, one per row.
        feature_names: Original feature names (schema order).
        data: The explained rows as given (original, unscaled values).
        outputs: The explained model output per row (what ``values`` add up to with the base).
        method: The engine that produced the values (``deep``, ``gradient``, ``permutation``, ``kernel``).
        why: How the method was chosen (each fallback and its reason).
        additivity_error: max over rows of ``|sum(values) + base - output|``, in output units.
        tolerance: The additivity tolerance applied (``tolerance * scale``), in output units.
        output: What the output is, in words (e.g. "log-odds of class 'benign'").
        target: The explained class per row (classification) or ``None``.
        background: The raw background rows (stored by :func:`attach`).
        background_kind: ``sample``, ``kmeans`` or ``stored``.
        seed: Seed of sampling and of the randomized engines.
        row_index: Position of each explained row in the X passed in (differs after sampling).
        elapsed: Seconds spent computing the values.
    """

    values: np.ndarray
    base_values: np.ndarray
    feature_names: list[str]
    data: pd.DataFrame
    outputs: np.ndarray
    method: str
    why: str
    additivity_error: float
    tolerance: float
    output: str
    target: list[Any] | None
    background: pd.DataFrame = field(repr=False)
    background_kind: str = "sample"
    seed: int = 0
    row_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    elapsed: float = 0.0

    def __repr__(self) -> str:
        return (f"Explanation(rows={len(self.values)}, features={len(self.feature_names)}, method={self.method!r}, "
                f"output={self.output!r}, additivity_error={self.additivity_error:.2e}, "
                f"background={len(self.background)} {self.background_kind})")

    def importance(self) -> pd.DataFrame:
        """Global ranking: mean |SHAP| per feature, largest first (index = rank from 1)."""
        mean_abs = np.abs(self.values).mean(axis=0)
        order = np.argsort(-mean_abs, kind="stable")
        frame = pd.DataFrame({"feature": [self.feature_names[i] for i in order], "mean_abs_shap": mean_abs[order]})
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
        return frame

    def section(self) -> dict[str, Any]:
        """The JSON section :func:`attach` stores in the bundle (and a model card can show)."""
        return {
            "format": "kit.explain/1", "method": self.method, "why": self.why, "output": self.output,
            "importance": [{"feature": f, "mean_abs_shap": float(v)}
                           for f, v in self.importance().itertuples(index=False)],
            "additivity_error": self.additivity_error, "tolerance": self.tolerance,
            "rows_explained": len(self.values), "background_size": len(self.background),
            "background_kind": self.background_kind, "background_artifact": BACKGROUND_ARTIFACT,
            "seed": self.seed,
        }

    def to_shap(self) -> Any:
        """The same values as a ``shap.Explanation`` (for shap's own plots)."""
        shap = _require_shap()
        data = np.column_stack([pd.to_numeric(self.data[c], errors="coerce") if _numeric(self.data[c])
                                else self.data[c].astype(object) for c in self.feature_names])
        return shap.Explanation(self.values, base_values=self.base_values, data=data,
                                feature_names=list(self.feature_names))

    # plots (matplotlib Figures; no pyplot state, safe headless)
    def plot_bar(self, max_display: int = 15) -> Figure:
        """Mean |SHAP| per feature as horizontal bars."""
        from kit import explain_plots

        return explain_plots.bar(self, max_display)

    def plot_beeswarm(self, max_display: int = 15) -> Figure:
        """Every row's SHAP value per feature, colored by the feature's value."""
        from kit import explain_plots

        return explain_plots.beeswarm(self, max_display)

    def plot_waterfall(self, row: int = 0, max_display: int = 12) -> Figure:
        """How one row's output is built from the base value, feature by feature."""
        from kit import explain_plots

        return explain_plots.waterfall(self, row, max_display)

    def plot_dependence(self, feature: str | None = None) -> Figure:
        """SHAP value of one feature (default: the top-ranked) against its value."""
        from kit import explain_plots

        return explain_plots.dependence(self, feature)


def _require_shap() -> Any:
    return engines.shap_module()


def _numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))


# -- rows and backgrounds ------------------------------------------------------------------------
def rows_frame(bundle: ModelBundle, X: Any, what: str = "rows") -> pd.DataFrame:
    """Validate raw rows against the bundle's schema and return them as a DataFrame in schema order.

    Raises:
        SchemaError: For empty input, missing/extra columns or values the preprocessor refuses.
    """
    if X is None:
        raise SchemaError(f"no {what} given", field=what)
    cols, n = bundle.preprocessor.columns(X)
    if n == 0:
        raise SchemaError(f"no {what} to explain: the input is empty", field=what)
    frame = pd.DataFrame({name: np.asarray(cols[name], dtype=object) for name in bundle.feature_names})
    for name in bundle.feature_names:  # numeric columns back to numbers where they are
        if bundle.preprocessor.kinds_[name] == "numeric":
            converted = pd.to_numeric(frame[name], errors="coerce")
            if converted.notna().sum() == frame[name].notna().sum():
                frame[name] = converted
    bundle.transform(frame)  # raises SchemaError naming column and row
    return frame


def make_background(bundle: ModelBundle, X: Any, size: int = 100, kind: str = "sample",
                    seed: int = 0) -> pd.DataFrame:
    """A background sample of raw rows: a seeded random sample or a k-means summary.

    ``kmeans`` clusters the rows in network space and keeps the real row nearest to each of
    ``size`` centroids, so the background stays valid raw rows for every engine.

    Raises:
        ConfigError: For a bad ``size`` or ``kind``.
        SchemaError: If the rows do not match the schema.
    """
    if size < 1:
        raise ConfigError(f"background_size must be >= 1, but got {size=}", field="background_size")
    if kind not in ("sample", "kmeans"):
        raise ConfigError(f"background_kind must be 'sample' or 'kmeans', but got {kind=}", field="background_kind")
    frame = rows_frame(bundle, X, "background")
    if len(frame) <= size:
        return frame
    if kind == "sample":
        picked = np.sort(np.random.default_rng(seed).choice(len(frame), size, replace=False))
    else:
        from sklearn.cluster import KMeans

        x = bundle.transform(frame)
        km = KMeans(n_clusters=size, n_init=3, random_state=seed).fit(x)
        dist = ((x[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
        picked = np.unique(dist.argmin(axis=0))
    return frame.iloc[picked].reset_index(drop=True)


def stored_background(bundle: ModelBundle) -> pd.DataFrame | None:
    """The background :func:`attach` stored in the bundle, or ``None``."""
    blob = bundle.artifacts.get(BACKGROUND_ARTIFACT)
    if blob is None:
        return None
    try:
        doc = json.loads(blob)
        frame = pd.DataFrame(doc["rows"], columns=doc["columns"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{BACKGROUND_ARTIFACT} cannot be read: {exc}", file=BACKGROUND_ARTIFACT) from exc
    return frame


def _background_bytes(frame: pd.DataFrame) -> bytes:
    rows = [[None if v is None or (isinstance(v, float) and np.isnan(v)) else
             (v.item() if isinstance(v, np.generic) else v) for v in row]
            for row in frame.astype(object).itertuples(index=False)]
    doc = {"format": "kit.explain.background/1", "columns": list(frame.columns), "rows": rows}
    return json.dumps(doc, separators=(",", ":")).encode()


def attach(bundle: ModelBundle, explanation: Explanation) -> ModelBundle:
    """A copy of ``bundle`` storing the explanation's background and global importance.

    The background goes to the artifact ``explain_background.json`` (raw rows, JSON), the ranking
    and method to ``sections["explanation"]``; ``explain(bundle, rows)`` then needs no background.

    Raises:
        ConfigError: If the explanation was made for other features.
    """
    if list(explanation.feature_names) != bundle.feature_names:
        raise ConfigError("this explanation was made for other features than the bundle's", field="explanation")
    clone = bundle.with_section(SECTION, explanation.section())
    clone.artifacts[BACKGROUND_ARTIFACT] = _background_bytes(explanation.background[bundle.feature_names])
    return clone


# -- explain -------------------------------------------------------------------------------------
def _classes(bundle: ModelBundle, target: Any, outputs_all: np.ndarray) -> tuple[np.ndarray, str]:
    """The explained class index per row and a description of the choice."""
    n = len(outputs_all)
    if bundle.task == "regression":
        if target is not None:
            raise ConfigError(f"target selects a class; a regression model has none, but got {target=}",
                              field="target")
        return np.zeros(n, dtype=np.int64), f"predicted {bundle.target!r}"
    labels = list(bundle.label_names or [])
    if target is None:
        target = labels[1] if len(labels) == 2 else "predicted"
    if isinstance(target, str) and target == "predicted" and "predicted" not in labels:
        return outputs_all.argmax(axis=1).astype(np.int64), "the predicted class of each row"
    if target in labels:
        index = labels.index(target)
    elif str(target) in [str(v) for v in labels]:
        index = [str(v) for v in labels].index(str(target))
    elif isinstance(target, int | np.integer) and 0 <= int(target) < len(labels):
        index = int(target)
    else:
        raise ConfigError(f"target {target!r} is not one of the classes {labels} (or 'predicted')", field="target")
    return np.full(n, index, dtype=np.int64), f"class {labels[index]!r}"


def _output_words(bundle: ModelBundle, output: str, which: str) -> str:
    if bundle.task == "regression":
        return which
    if output == "probability":
        return f"probability of {which}"
    if len(bundle.label_names or []) == 2:
        return f"log-odds of {which}"
    return f"centered logit (log p minus mean log p over classes) of {which}"


def explain(bundle: ModelBundle, X: Any, background: Any = None, method: str = "auto", target: Any = None, *,
            output: str = "logit", background_size: int = 100, background_kind: str = "sample", seed: int = 0,
            max_rows: int = 1000, tolerance: float = 1e-4, nsamples: int | None = None,
            device: str = "cpu") -> Explanation:
    """Explain the bundle's predictions for rows ``X`` with SHAP values per original feature.

    Args:
        bundle: A trained bundle.
        X: Rows to explain: records, one dict, a DataFrame or a 2-D array in schema order.
        background: Raw rows the explanation is relative to (reduced to ``background_size``);
            ``None`` uses the background stored by :func:`attach`.
        method: ``auto``, ``deep``, ``gradient``, ``permutation`` or ``kernel``.
        target: Class to explain (a label or class index); default: the positive (second) class
            for binary, the predicted class of each row (``"predicted"``) for multiclass.
        output: ``logit`` (default) or ``probability`` for classifiers (see the module docstring).
        background_size: Background rows kept when ``background`` is given.
        background_kind: ``sample`` (seeded random rows) or ``kmeans`` (rows nearest k-means centroids).
        seed: Seed of every sample and of the randomized engines: same seed, same values.
        max_rows: Larger ``X`` is replaced by a seeded sample of this many rows, with a warning.
        tolerance: Additivity tolerance, relative to the output scale (target std for regression).
        nsamples: Engine budget (gradient samples, permutation/kernel evaluations); ``None``: defaults.
        device: Torch device of ``deep``/``gradient`` (``cpu``, ``cuda``).

    Returns:
        The :class:`Explanation`.

    Raises:
        SchemaError: If ``X`` or ``background`` is empty or does not match the schema.
        ConfigError: For a bad option, a missing background, or ``deep``/``gradient`` forced on a
            bundle that does not run on torch or has a layer DeepLIFT cannot handle.
    """
    from kit.runtime import TorchRuntime

    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, but got {method=}", field="method")
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {OUTPUTS}, but got {output=}", field="output")
    if max_rows < 1 or tolerance < 0:
        raise ConfigError(f"max_rows must be >= 1 and tolerance >= 0, but got {max_rows=}, {tolerance=}",
                          field="max_rows" if max_rows < 1 else "tolerance")
    frame = rows_frame(bundle, X)
    row_index = np.arange(len(frame))
    if len(frame) > max_rows:
        warnings.warn(f"X has {len(frame)} rows, more than max_rows={max_rows}; explaining a seeded random "
                      f"sample of {max_rows} rows (seed={seed})", UserWarning, stacklevel=2)
        row_index = np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False))
        frame = frame.iloc[row_index].reset_index(drop=True)
    kind = "stored"
    if background is None:
        bg = stored_background(bundle)
        if bg is None:
            raise ConfigError("no background: pass background= (e.g. training rows), or attach() an "
                              "explanation to store one in the bundle", field="background")
        bg = rows_frame(bundle, bg, "background")
        key = hashlib.sha256(bundle.artifacts[BACKGROUND_ARTIFACT]).hexdigest()
    else:
        bg = make_background(bundle, background, background_size, background_kind, seed)
        kind = background_kind
        key = hashlib.sha256(_background_bytes(bg)).hexdigest()
    ctx = engines.context(bundle, bg, key, device)

    outputs_all = engines.explained_outputs(bundle, bundle.infer(frame), output)
    classes, which = _classes(bundle, target, outputs_all)
    outputs = outputs_all[np.arange(len(frame)), classes]
    scale = float((bundle.target_scaling or {}).get("std", 1.0)) if bundle.task == "regression" else 1.0
    tol = tolerance * scale
    req = engines.Request(bundle.transform(frame).astype(np.float64), engines.encode(bundle, frame), classes,
                          output, seed, nsamples)
    torch_ok = isinstance(bundle.runtime, TorchRuntime)

    start = time.perf_counter()
    reasons: list[str] = []
    values, base, name, error = np.zeros((0, 0)), np.zeros(0), method, float("inf")
    if method == "auto":
        chain = ["deep", "gradient", "permutation"]
        if not torch_ok:
            reasons.append(f"runtime {type(bundle.runtime).__name__} is not torch: deep and gradient would explain "
                           "another model than the one served")
            chain = ["permutation"]
        memo = ctx.auto.get((output, tol))
        if memo is not None and memo[0] in chain:  # an earlier call already walked the chain
            reasons, chain = list(memo[1]), chain[chain.index(memo[0]):]
    else:
        if method in engines.TORCH_ENGINES and not torch_ok:
            raise ConfigError(f"method={method!r} explains the torch network, but this bundle runs on "
                              f"{type(bundle.runtime).__name__}; use 'permutation' or 'kernel'", field="method")
        chain = [method]
        reasons.append(f"{method}: forced by method={method!r}")
    for i, name in enumerate(chain):
        try:
            values, base = engines.get_engine(name)(ctx, req)
        except engines.Unsupported as exc:
            if method != "auto":
                raise ConfigError(f"method={method!r} cannot explain this network: {exc}", field="method") from None
            reasons.append(f"{name}: skipped, {exc}")
            continue
        error = float(np.max(np.abs(values.sum(axis=1) + base - outputs)))
        if error <= tol:
            if method == "auto":
                ctx.auto[(output, tol)] = (name, list(reasons))
                reasons.append(f"{name}: additivity error {error:.2e} <= {tol:.2e}")
            break
        if method == "auto" and i + 1 < len(chain):
            reasons.append(f"{name}: failed the additivity check ({error:.2e} > {tol:.2e})")
            continue
        reasons.append(f"{name}: additivity error {error:.2e} exceeds the tolerance {tol:.2e}")
        warnings.warn(f"SHAP values of method {name!r} do not add up to the model output "
                      f"(error {error:.2e} > {tol:.2e})", UserWarning, stacklevel=2)
    elapsed = time.perf_counter() - start
    labels = bundle.label_names
    return Explanation(
        values=values, base_values=base, feature_names=bundle.feature_names, data=frame, outputs=outputs,
        method=name, why="; ".join(reasons), additivity_error=error, tolerance=tol,
        output=_output_words(bundle, output, which),
        target=None if labels is None else [labels[c] for c in classes], background=ctx.background,
        background_kind=kind, seed=seed, row_index=row_index, elapsed=elapsed,
    )


# -- CLI -----------------------------------------------------------------------------------------
def cmd_explain(args: argparse.Namespace) -> int:
    """``kit explain``: explain test rows, print the ranking, save plots and the bundle."""
    from pathlib import Path

    from kit.bundle import ModelBundle
    from kit.config import DataConfig
    from kit.data import load

    bundle = ModelBundle.load(args.bundle)
    if "data" not in bundle.configs:
        raise DataError("the bundle does not record its data config; cannot reload its data", field="configs")
    config = DataConfig.from_dict(bundle.configs["data"])
    if args.data:
        config = config.replace(source=args.data)
    splits = load(config).split(config.valid_size, config.test_size, config.seed)
    rows = splits.test.X.iloc[: args.rows]
    ex = explain(bundle, rows, background=splits.train.X, method=args.method,
                 background_size=args.background_size, background_kind=args.background_kind, seed=args.seed)
    print(f"{ex.method} ({ex.why})")
    print(f"explained {len(ex.values)} test rows: {ex.output}; additivity error {ex.additivity_error:.2e}; "
          f"{ex.elapsed:.2f} s")
    print(ex.importance().to_string(float_format=lambda v: f"{v:.4f}"))
    plots_dir = Path(args.plots) if args.plots else (Path(args.out) / "plots" if args.out else None)
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
        figures = {"bar": ex.plot_bar(), "beeswarm": ex.plot_beeswarm(), "waterfall": ex.plot_waterfall(0),
                   "dependence": ex.plot_dependence()}
        for name, fig in figures.items():
            fig.savefig(plots_dir / f"shap_{name}.png", dpi=110, bbox_inches="tight")
        print(f"plots saved to {plots_dir}")
    if args.out:
        print(f"bundle with the stored explanation saved to {attach(bundle, ex).save(args.out)}")
    return 0


def register_cli(sub: Any) -> None:
    """Add ``kit explain`` to the ``kit`` command."""
    p = sub.add_parser("explain", help="SHAP explanation of a saved bundle",
                       description="Explain a bundle's test rows with SHAP (background: training rows), "
                                   "print the global ranking, save plots and the bundle with the explanation.")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--rows", type=int, default=200, help="test rows to explain (default 200)")
    p.add_argument("--out", help="write the bundle with the stored explanation here (plots in OUT/plots)")
    p.add_argument("--plots", help="directory for PNG plots (default OUT/plots when --out is given)")
    p.add_argument("--method", default="auto", choices=list(METHODS))
    p.add_argument("--background-size", type=int, default=100)
    p.add_argument("--background-kind", default="sample", choices=["sample", "kmeans"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="reload the data from this path instead of the one recorded in the bundle")
    p.set_defaults(func=cmd_explain)
