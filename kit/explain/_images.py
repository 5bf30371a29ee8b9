"""SHAP values per pixel for an image model: DeepLIFT where every layer has a rule, else GradientExplainer.

The network sees normalized ``(channels, height, width)`` images; the engines see them flattened
(a reshape in front of the network, which DeepLIFT passes through), so the batched DeepLIFT of the
table path (:func:`kit.explain._engines.deeplift`) explains many images in one backward pass. The
values are per pixel and channel of the network's input; their sum plus the base value is checked
against the model's output for each image (additivity), as for tables. Images are explained in
chunks, in order, so a caller sees progress and can stop between chunks (the images explained by
then are the explanation).
"""

from __future__ import annotations

import functools
import math
import textwrap
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.config import ExplainConfig
from kit.errors import ConfigError, IntegrityError, require
from kit.explain import _engines as engines

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle
    from kit.sections import ExplanationSection


@dataclass
class ImageExplanation:
    """Per-pixel SHAP values of some images.

    Attributes:
        values: ``(n, channels, height, width)``: each pixel's contribution to the explained output.
        base_values: The expected output over the background, per image.
        outputs: The explained output of each image (what ``values.sum() + base`` adds up to).
        pixels: The images as the model took them, uint8 ``(n, height, width, channels)``.
        method: ``deep`` or ``gradient``.
        why: How the method was chosen (and where it was stopped, when it was).
        additivity_error: Largest ``|sum(values) + base - output|`` over the images.
        tolerance: The additivity tolerance.
        output: What the output is, in words.
        target: The explained class per image.
        predicted: The predicted label per image.
        confidence: The predicted label's probability per image (``None`` for regression).
        stopped: Whether ``should_stop`` ended the run before every image was explained.
    """

    values: np.ndarray
    base_values: np.ndarray
    outputs: np.ndarray
    pixels: np.ndarray
    method: str
    why: str
    additivity_error: float
    tolerance: float
    output: str
    target: list[Any]
    predicted: list[Any]
    elapsed: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    background: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 1), dtype=np.uint8), repr=False)
    """The background images, uint8 ``(b, height, width, channels)`` (what :func:`attach_images` stores)."""
    confidence: np.ndarray | None = None
    stopped: bool = False

    def __repr__(self) -> str:
        n, c, h, w = self.values.shape
        return (f"ImageExplanation({n} images {h}x{w}x{c}, method={self.method!r}, "
                f"additivity_error={self.additivity_error:.2e})")

    def heatmap(self, row: int) -> np.ndarray:
        """One image's SHAP map ``(height, width)``: the values summed over channels."""
        out: np.ndarray = self.values[row].sum(axis=0)
        return out

    def global_map(self) -> np.ndarray:
        """Mean absolute SHAP value per pixel over the explained images (summed over channels)."""
        out: np.ndarray = np.abs(self.values).sum(axis=1).mean(axis=0)
        return out

    def to_dict(self) -> dict[str, Any]:
        """What ``/explain`` answers: per image, the map as a nested array ``[channel][y][x]``."""
        return {"method": self.method, "output": self.output, "additivity_error": self.additivity_error,
                "rows": [{"base_value": float(b), "output": float(o), "class": t, "prediction": p,
                          "shap": v.tolist()}
                         for b, o, t, p, v in zip(self.base_values, self.outputs, self.target, self.predicted,
                                                  self.values, strict=True)]}

    def section(self) -> ExplanationSection:
        """What :func:`attach_images` stores in the bundle (the mean |SHAP| map included)."""
        from kit.sections import ExplanationSection

        return ExplanationSection(
            method=self.method, why=self.why, output=self.output, additivity_error=self.additivity_error,
            tolerance=self.tolerance, rows_explained=len(self.values), background_size=len(self.background),
            background_kind="sample", background_artifact=IMAGE_BACKGROUND, seed=int(self.config.get("seed", 0)),
            config=dict(self.config), extra={"kind": "image", "mean_abs_map": self.global_map().round(6).tolist()})

    def plot_overlay(self, rows: int | Sequence[int] = 4, truth: Sequence[Any] | None = None) -> Figure:
        """The images, and the SHAP map of each one's explained class over it.

        Args:
            rows: How many images from the first (an int), or which ones (their positions).
            truth: Each explained image's true label (by position), shown beside the prediction
                (in red where they differ).
        """
        from kit.explain._plots import _figure

        picked = list(range(min(rows, len(self.values)))) if isinstance(rows, int) else [int(i) for i in rows]
        if not picked:
            raise ConfigError("plot_overlay needs at least one explained image", field="rows")
        n = len(picked)
        fig = _figure(2.2 * n + 0.4, 5.0)
        axes = fig.subplots(2, n, squeeze=False)
        for k, i in enumerate(picked):
            image = self.pixels[i]
            shown = image[..., 0] if image.shape[-1] == 1 else image
            axes[0, k].imshow(shown, cmap="gray" if image.shape[-1] == 1 else None)
            title, wrong = f"#{i} predicted {self.predicted[i]}", False
            if truth is not None:
                wrong = str(truth[i]) != str(self.predicted[i])
                title += f"\ntrue {truth[i]}"
            axes[0, k].set_title(title, fontsize=9, color="#b00020" if wrong else "black")
            heat = self.heatmap(i)
            limit = float(np.abs(heat).max()) or 1.0
            axes[1, k].imshow(image.mean(axis=-1), cmap="gray")
            # the stronger a pixel's value, the more opaque its colour: the picture shows through the rest
            axes[1, k].imshow(heat, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.15 + 0.75 * np.abs(heat) / limit)
            axes[1, k].set_title(f"SHAP for {self.target[i]}", fontsize=9)
            for ax in axes[:, k]:
                ax.axis("off")
        fig.suptitle(textwrap.fill(f"{self.method}: red pushes towards the class, blue away ({self.output})",
                                   max(24 * n, 30)), fontsize=9)
        return fig

    def plot_global(self) -> Figure:
        """The mean |SHAP| map: where the model looks, over every explained image."""
        from kit.explain._plots import _figure

        fig = _figure(3.6, 3.2)
        ax = fig.add_subplot()
        shown = ax.imshow(self.global_map(), cmap="magma")
        fig.colorbar(shown, ax=ax)
        ax.set_title(f"mean |SHAP| over {len(self.values)} images", fontsize=9)
        ax.axis("off")
        return fig


def _view_network(bundle: ModelBundle, output: str, cls: int, dtype: str) -> Any:
    """The bundle's network behind a reshape from flat rows, followed by the explained-output head."""
    torch = require("torch", "train")
    shape = tuple(bundle.net.shape)

    class ImageView(torch.nn.Module):  # type: ignore[misc, name-defined]
        """Flat rows back to images (a reshape: DeepLIFT passes it through)."""

        def forward(self, x: Any) -> Any:
            return x.view(x.shape[0], *shape)

    from shap.explainers._deep import deep_pytorch

    deep_pytorch.op_handler.setdefault("ImageView", deep_pytorch.passthrough)
    model = torch.nn.Sequential(ImageView(), bundle.module(), engines._head(bundle, output, cls)).eval()
    return model.to(dtype=getattr(torch, dtype))


def explain_images(bundle: ModelBundle, X: Any = None, background: Any = None,
                   config: ExplainConfig | None = None, *, progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, **fields: Any) -> ImageExplanation:
    """Per-pixel SHAP values of an image bundle (see the module docstring).

    Args:
        bundle: An image bundle running on torch.
        X: Images to explain (records, a DataFrame with an ``image`` column, uint8 arrays); ``None``:
            the first ``config.rows`` images of the bundle's own test split.
        background: Images the values are relative to (``background_size`` of them, a seeded
            sample); ``None``: a sample of the bundle's own training split.
        config: Method (``auto``, ``deep`` or ``gradient``), target, output, sizes, seed, tolerance.
        progress: Told ``(images explained, images)`` after each chunk.
        should_stop: Polled before each chunk; ``True`` ends the run, and the images explained by then
            are the explanation (``stopped`` is set and ``why`` says where it stopped).
        **fields: Shorthands for ``config`` fields.

    Raises:
        ConfigError: For a method other than auto/deep/gradient, or deep forced on a network with a
            layer DeepLIFT has no rule for.
    """
    torch = require("torch", "train")
    engines.shap_module()
    from kit.explain._explain import _classes, _output_words
    from kit.explain._rules import missing_rules

    config = ExplainConfig.resolve(config, fields)
    if config.method not in ("auto", "deep", "gradient"):
        raise ConfigError(f"images are explained with deep or gradient (or auto), not {config.method!r}",
                          field="method")
    pre: Any = bundle.preprocessor
    if X is None:
        X = bundle.reload_data().splits.test.X.iloc[: config.rows]
    if background is None:
        background = stored_images(bundle)
    if background is None:
        background = bundle.reload_data().splits.train.X
    pixels = pre.pixels(X)[: config.max_rows]
    bg_pixels = pre.pixels(background)
    pick = np.random.default_rng(config.seed).choice(len(bg_pixels), min(config.background_size, len(bg_pixels)),
                                                     replace=False)
    bg_pixels = bg_pixels[np.sort(pick)]
    x = pre.normalize(pixels).reshape(len(pixels), -1).astype(np.float64)
    bg = pre.normalize(bg_pixels).reshape(len(bg_pixels), -1).astype(np.float64)
    predicted = bundle.infer(pixels)
    outputs_all = engines.explained_outputs(bundle, predicted, config.output)
    classes, which = _classes(bundle, config.target, outputs_all)
    outputs = outputs_all[np.arange(len(x)), classes]
    engines._register_silu()
    from shap.explainers._deep import deep_pytorch

    missing = missing_rules(_view_network(bundle, config.output, 0, "float64"), deep_pytorch.op_handler)
    reasons: list[str] = []
    if bundle.runtime_info.get("name") != "torch":
        reasons.append(f"explains the fp32 torch network; the bundle serves {bundle.runtime_info.get('variant')}")
    method = config.method
    if method == "deep" and missing:
        raise ConfigError(f"method='deep' cannot explain this network: no DeepLIFT rule for {', '.join(missing)}",
                          field="method")
    if method == "auto":
        method = "gradient" if missing else "deep"
        reasons.append(f"deep: skipped, no rule for {', '.join(missing)}" if missing
                       else "deep: DeepLIFT has a rule for every layer")
    else:
        reasons.append(f"{method}: forced by method={method!r}")
    start = time.perf_counter()
    values, base = _run(bundle, method, x, bg, classes, config, torch, progress, should_stop)
    elapsed = time.perf_counter() - start
    done = len(values)
    if done < len(x):
        reasons.append(f"stopped after {done} of {len(x)} images")
    outputs = outputs[:done]
    error = float(np.max(np.abs(values.sum(axis=1) + base - outputs))) if done else 0.0
    tol = config.tolerance if method == "deep" else max(config.tolerance, 0.05 * float(np.abs(outputs).max(initial=1)))
    reasons.append(f"{method}: additivity error {error:.2e} {'<=' if error <= tol else '>'} {tol:.2e}")
    if error > tol:
        warnings.warn(f"per-pixel SHAP values of {method!r} do not add up to the model output (error {error:.2e} > "
                      f"{tol:.2e})", UserWarning, stacklevel=2)
    labels = list(bundle.label_names or [])
    probabilities = predicted.probabilities
    return ImageExplanation(
        values=values.reshape(done, *bundle.net.shape), base_values=base, outputs=outputs, pixels=pixels[:done],
        method=method, why="; ".join(reasons), additivity_error=error, tolerance=tol,
        output=_output_words(bundle, config.output, which), target=[labels[c] for c in classes[:done]],
        predicted=list(predicted.labels or [])[:done], elapsed=elapsed, config=config.to_dict(), background=bg_pixels,
        confidence=None if probabilities is None else probabilities.max(axis=1)[:done].astype(np.float64),
        stopped=done < len(x))


IMAGE_BACKGROUND = "explain_background_images.safetensors"
"""Bundle file of the background images :func:`attach_images` stores (uint8, safetensors: no pickle)."""


def stored_images(bundle: ModelBundle) -> np.ndarray | None:
    """The background images stored in the bundle, or ``None``."""
    blob = bundle.artifacts.get(IMAGE_BACKGROUND)
    if blob is None:
        return None
    from safetensors.numpy import load

    try:
        pixels: np.ndarray = load(blob)["pixels"]
    except Exception as exc:  # safetensors raises its own error types on a bad file
        raise IntegrityError(f"{IMAGE_BACKGROUND} cannot be read: {exc}", file=IMAGE_BACKGROUND) from exc
    return pixels


def attach_images(bundle: ModelBundle, explanation: ImageExplanation) -> ModelBundle:
    """A copy of ``bundle`` storing the explanation's background images and what was found.

    ``/explain`` then answers from the stored background (a served model has no training data).
    """
    from safetensors.numpy import save

    section = explanation.section()
    clone = bundle.with_section(section)
    clone.configs["explain"] = dict(explanation.config)
    clone.artifacts[IMAGE_BACKGROUND] = save({"pixels": np.ascontiguousarray(explanation.background)})
    return clone


def chunk_size(rows: int, background: int, steps: int = 10, pairs: int = 2_000) -> int:
    """Images per chunk: about ``steps`` chunks, and at most ``pairs`` image x background pairs in one."""
    return max(1, min(math.ceil(rows / steps), pairs // max(background, 1)))


def _run(bundle: ModelBundle, method: str, x: np.ndarray, bg: np.ndarray, classes: np.ndarray,
         config: ExplainConfig, torch: Any, progress: Callable[[int, int], None] | None = None,
         should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The values and base values of the first images, chunk by chunk (all of them unless stopped)."""
    shap = engines.shap_module()
    dtype = "float64" if method == "deep" else "float32"
    values, base = np.zeros(x.shape), np.zeros(len(x))
    bg_t = torch.from_numpy(bg.astype(dtype))
    per_class: dict[int, tuple[Any, Any, float]] = {}  # model, explainer and base value of each explained class

    def explainer_of(cls: int) -> tuple[Any, Any, float]:
        if cls not in per_class:
            model = _view_network(bundle, config.output, cls, dtype)
            explainer = shap.DeepExplainer(model, bg_t) if method == "deep" else \
                functools.partial(shap.GradientExplainer, model, bg_t)()
            with torch.no_grad():
                per_class[cls] = (model, explainer, float(model(bg_t).double().mean()))
        return per_class[cls]

    done, step = 0, chunk_size(len(x), len(bg))
    while done < len(x) and not (should_stop is not None and should_stop()):
        chunk = slice(done, min(done + step, len(x)))
        for cls in np.unique(classes[chunk]):
            rows = chunk.start + np.flatnonzero(classes[chunk] == cls)
            model, explainer, mean = explainer_of(int(cls))
            base[rows] = mean
            xt = torch.from_numpy(x[rows].astype(dtype))
            if method == "deep":
                values[rows] = engines.deeplift(explainer, model, xt, bg_t, chunk_pairs=2_000)
            else:
                with engines._numpy_seed(config.seed):
                    sv = explainer.shap_values(xt, nsamples=config.nsamples or 200, rseed=config.seed)
                values[rows] = np.asarray(sv, dtype=np.float64).reshape(len(rows), -1)
        done = chunk.stop
        if progress is not None:
            progress(done, len(x))
    return values[:done], base[:done]
