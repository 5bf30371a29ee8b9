"""SHAP explanations of kit models: global and local, in the original feature space, additivity checked.

    from kit.explain import explain, attach
    ex = explain(bundle, test_rows, background=train_rows)     # method="auto"
    ex.importance()                                            # mean |SHAP| ranking
    ex.plot_beeswarm(); ex.plot_waterfall(0)                   # matplotlib Figures
    bundle = attach(bundle, ex)                                # stores background + ranking
    explain(bundle, few_rows)                                  # later: the stored background

**What is explained** (documented once, see ``kit/explain/_engines.py``): regression explains the
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

**Images** (``explain_images``): SHAP values per pixel and channel, DeepLIFT when every layer has a
rule, else GradientExplainer, additivity checked; ``ImageExplanation.plot_overlay`` (the image with
the map of its class) and ``plot_global`` (mean |SHAP| per pixel); ``attach_images`` stores the
background images (safetensors) so ``/explain`` answers per-pixel maps as nested arrays.

Modules: ``_explain`` (engine choice, additivity), ``_images`` (per-pixel values of image models),
``_engines`` (deep, gradient, permutation, kernel and their per-bundle cache), ``_background`` (rows and
backgrounds), ``_explanation`` (the result), ``_plots`` (matplotlib figures).
"""

from __future__ import annotations

from kit.config import EXPLAIN_METHODS as METHODS
from kit.config import EXPLAIN_OUTPUTS as OUTPUTS
from kit.config import ExplainConfig
from kit.explain._background import attach, make_background, rows_frame, stored_background
from kit.explain._explain import explain
from kit.explain._explanation import BACKGROUND_ARTIFACT, Explanation
from kit.explain._images import IMAGE_BACKGROUND, ImageExplanation, attach_images, explain_images

__all__ = ["BACKGROUND_ARTIFACT", "IMAGE_BACKGROUND", "METHODS", "OUTPUTS", "ExplainConfig", "Explanation",
           "ImageExplanation", "attach", "attach_images", "explain", "explain_images", "make_background", "rows_frame",
           "stored_background"]
