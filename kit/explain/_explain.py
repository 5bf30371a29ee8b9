"""``explain()``: choose an engine, compute SHAP values, check that they add up."""

from __future__ import annotations

import hashlib
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.config import ExplainConfig
from kit.errors import ConfigError
from kit.explain import _engines as engines
from kit.explain._background import _background_bytes, make_background, rows_frame, stored_background
from kit.explain._explanation import BACKGROUND_ARTIFACT, Explanation
from kit.explain._sampling import kernel, permutation

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


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


ENGINES: dict[str, engines.Engine] = {"deep": engines.deep, "gradient": engines.gradient, "permutation": permutation,
                                      "kernel": kernel}
"""Engines by name; ``explain(method=...)`` accepts these names."""

TORCH_ENGINES = ("deep", "gradient")


def get_engine(method: str) -> engines.Engine:
    """The engine called ``method``.

    Raises:
        ConfigError: If the name is unknown.
    """
    if method not in ENGINES:
        raise ConfigError(f"unknown explain method {method!r}; known: auto, {', '.join(ENGINES)}", field="method")
    return ENGINES[method]


def explain(bundle: ModelBundle, X: Any = None, background: Any = None, config: ExplainConfig | None = None,
            **fields: Any) -> Explanation:
    """Explain the bundle's predictions for rows ``X`` with SHAP values per original feature.

    Args:
        bundle: A trained bundle.
        X: Rows to explain: records, one dict, a DataFrame or a 2-D array in schema order;
            ``None``: the first ``config.rows`` rows of the bundle's own test split.
        background: Raw rows the explanation is relative to (reduced to ``background_size``);
            ``None``: the background stored by :func:`kit.explain.attach`, else a seeded sample
            of the bundle's own training split (see :meth:`~kit.bundle.ModelBundle.reload_data`).
        config: Method, target, output, background size and kind, seed, tolerance ... (see
            :class:`~kit.config.ExplainConfig`).
        **fields: Shorthands for ``config`` fields, e.g. ``explain(bundle, X, method="permutation")``.

    Returns:
        The :class:`Explanation` (an image model: :func:`kit.explain.explain_images`, per pixel).

    Raises:
        SchemaError: If ``X`` or ``background`` is empty or does not match the schema.
        ConfigError: For a bad option, or ``deep``/``gradient`` forced on a bundle that does not run
            on torch or has a layer DeepLIFT cannot handle.
        DataError: If rows must come from the bundle's data and it cannot be reloaded unchanged.
    """
    from kit.runtime import TorchRuntime

    if bundle.kind == "image":
        raise ConfigError("an image model is explained per pixel: kit.explain.explain_images(bundle, X) (and "
                          "kit.explain.attach_images to store its background)", field="bundle")
    config = ExplainConfig.resolve(config, fields)
    method, output, seed = config.method, config.output, config.seed
    if X is None:
        X = bundle.reload_data().splits.test.X.iloc[: config.rows]
    frame = rows_frame(bundle, X)
    row_index = np.arange(len(frame))
    if len(frame) > config.max_rows:
        warnings.warn(f"X has {len(frame)} rows, more than max_rows={config.max_rows}; explaining a seeded random "
                      f"sample of {config.max_rows} rows (seed={seed})", UserWarning, stacklevel=2)
        row_index = np.sort(np.random.default_rng(seed).choice(len(frame), config.max_rows, replace=False))
        frame = frame.iloc[row_index].reset_index(drop=True)
    bg, kind, key = _background(bundle, background, config)
    ctx = engines.context(bundle, bg, key, config.device)

    predicted = bundle.infer(frame)
    outputs_all = engines.explained_outputs(bundle, predicted, output)
    classes, which = _classes(bundle, config.target, outputs_all)
    outputs = outputs_all[np.arange(len(frame)), classes]
    scale = float((bundle.target_scaling or {}).get("std", 1.0)) if bundle.task == "regression" else 1.0
    tol = config.tolerance * scale
    req = engines.Request(bundle.transform(frame).astype(np.float64), engines.encode(bundle, frame), classes,
                          output, seed, config.nsamples)
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
        if method in TORCH_ENGINES and not torch_ok:
            raise ConfigError(f"method={method!r} explains the torch network, but this bundle runs on "
                              f"{type(bundle.runtime).__name__}; use 'permutation' or 'kernel'", field="method")
        chain = [method]
        reasons.append(f"{method}: forced by method={method!r}")
    explained = outputs
    for i, name in enumerate(chain):
        try:
            values, base, observed = get_engine(name)(ctx, req)
        except engines.Unsupported as exc:
            if method != "auto":
                raise ConfigError(f"method={method!r} cannot explain this network: {exc}", field="method") from None
            reasons.append(f"{name}: skipped, {exc}")
            continue
        explained = outputs if observed is None else observed
        shift = 0.0 if observed is None else float(np.max(np.abs(observed - outputs)))
        if shift > tol:
            # The runtime answers a row differently depending on the other rows of its batch (dynamic
            # int8 quantizes activations with per-batch ranges): the values add up to the output the
            # engine observed, which is stated, never silently compared with another batch's output.
            reasons.append(f"{name}: the {bundle.runtime_info.get('variant', 'runtime')} output of a row depends on "
                           f"the rest of its batch (up to {shift:.2e} here); values add up to the output "
                           "observed in the explanation batch")
        error = float(np.max(np.abs(values.sum(axis=1) + base - explained)))
        if error <= tol:
            if method == "auto":
                ctx.auto[(output, tol)] = (name, [r for r in reasons if "depends on the rest" not in r])
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
        values=values, base_values=base, feature_names=bundle.feature_names, data=frame, outputs=explained,
        method=name, why="; ".join(reasons), additivity_error=error, tolerance=tol,
        output=_output_words(bundle, output, which),
        target=None if labels is None else [labels[c] for c in classes], background=ctx.background,
        background_kind=kind, seed=seed, row_index=row_index, elapsed=elapsed, config=config.to_dict(),
        predicted=list(predicted.labels) if predicted.labels is not None else None,
        confidence=predicted.probabilities.max(axis=1) if predicted.probabilities is not None else None,
    )


def _background(bundle: ModelBundle, background: Any, config: ExplainConfig) -> tuple[Any, str, str]:
    """The background rows, their kind (``stored``, ``sample``, ``kmeans``) and a cache key."""
    if background is None:
        stored = stored_background(bundle)
        if stored is not None:
            bg = rows_frame(bundle, stored, "background")
            return bg, "stored", hashlib.sha256(bundle.artifacts[BACKGROUND_ARTIFACT]).hexdigest()
        background = bundle.reload_data().splits.train.X  # a fresh bundle: a seeded sample of its own training rows
    bg = make_background(bundle, background, config.background_size, config.background_kind, config.seed)
    return bg, config.background_kind, hashlib.sha256(_background_bytes(bg)).hexdigest()
