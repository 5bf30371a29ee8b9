"""Model-agnostic engines: permutation sampling of Shapley values (exactly additive) and shap's KernelExplainer.

Both mask whole original features in the encoded raw space, decode the rows and call
``bundle.infer``, so they explain whatever runtime the bundle uses (torch, ONNX int8 ...).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kit.explain._engines import Context, Request, Result, _numpy_seed, decode, explained_outputs, shap_module


def _agnostic_fn(ctx: Context, req: Request) -> tuple[Callable[[np.ndarray], np.ndarray], list[int]]:
    """f(encoded rows) -> explained outputs of the needed classes via ``bundle.infer``."""
    wanted = sorted(int(c) for c in np.unique(req.classes))

    def f(codes: np.ndarray) -> np.ndarray:
        pred = ctx.bundle.infer(decode(ctx.bundle, np.asarray(codes, dtype=np.float64)))
        out = explained_outputs(ctx.bundle, pred, req.output)[:, wanted]
        return out[:, 0] if len(wanted) == 1 else out

    return f, wanted


def _pick(values: np.ndarray, base: np.ndarray, classes: np.ndarray, wanted: list[int]) -> tuple[
        np.ndarray, np.ndarray]:
    """Select each row's class from multi-output shap results."""
    n = len(classes)
    if values.ndim == 2:
        return values, np.broadcast_to(np.asarray(base, dtype=np.float64).reshape(-1), (n,)).copy()
    col = np.searchsorted(wanted, classes)
    base = np.asarray(base, dtype=np.float64)
    base = base[np.arange(n), col] if base.ndim == 2 else base[col]
    return values[np.arange(n), :, col], base


def permutation(ctx: Context, req: Request) -> Result:
    """Permutation sampling of Shapley values over whole original features, calling ``bundle.infer``.

    The algorithm of ``shap.PermutationExplainer`` with an independent masker: for each sampled
    feature order and its reverse, switch features from background to row one at a time and credit
    each switch's change of the output (averaged over the background) to that feature. Each order
    telescopes from the background mean to the row's output, so the values add up exactly to the
    outputs of that same model call, which are returned as the base and the observed output: a
    runtime whose answer for a row depends on the rest of its batch (dynamic int8) is then still
    explained additively, and the caller can see how far those outputs are from the served ones.
    Written in numpy (one model call per row) because shap's version compiles numba kernels on first
    use, which costs tens of seconds per process (too slow for a service's first ``/explain``).
    """
    f, wanted = _agnostic_fn(ctx, req)
    x, bg = req.x_enc, ctx.bg_enc
    n, n_features = x.shape
    pairs = max(1, (req.nsamples or 10 * (2 * n_features + 1)) // (2 * n_features + 1))
    rng = np.random.default_rng(req.seed)
    values = np.zeros((n, n_features, len(wanted)))
    base = np.zeros((n, len(wanted)))
    observed = np.zeros((n, len(wanted)))
    steps = np.tril(np.ones((n_features + 1, n_features), dtype=bool), k=-1)  # row k: first k features on
    for i in range(n):
        forward = [rng.permutation(n_features) for _ in range(pairs)]
        orders = np.array([o for p in forward for o in (p, p[::-1])])  # (2 * pairs, f)
        masks = np.zeros((len(orders), n_features + 1, n_features), dtype=bool)
        for j, order in enumerate(orders):
            masks[j][:, order] = steps
        inputs = np.where(masks[:, :, None, :], x[i][None, None, None, :], bg[None, None, :, :])
        out = np.asarray(f(inputs.reshape(-1, n_features)), dtype=np.float64)
        out = out.reshape(len(orders), n_features + 1, len(bg), -1).mean(axis=2)
        deltas = out[:, 1:] - out[:, :-1]  # (orders, step, k): step s switched feature order[s]
        for j, order in enumerate(orders):
            values[i, order] += deltas[j]
        base[i], observed[i] = out[:, 0].mean(axis=0), out[:, -1].mean(axis=0)  # the telescope's two ends
    values /= len(orders)
    col = np.searchsorted(wanted, req.classes)
    rows = np.arange(n)
    return values[rows, :, col], base[rows, col], observed[rows, col]


def kernel(ctx: Context, req: Request) -> Result:
    """KernelExplainer of shap over whole original features, calling ``bundle.infer`` (the slow baseline)."""
    shap = shap_module()
    f, wanted = _agnostic_fn(ctx, req)
    n_features = req.x_enc.shape[1]
    nsamples = req.nsamples or 2 * n_features + 2048
    with ctx.lock, _numpy_seed(req.seed):
        explainer = shap.KernelExplainer(f, ctx.bg_enc)
        sv = explainer.shap_values(req.x_enc, nsamples=nsamples, l1_reg=False, silent=True)
    return (*_pick(np.asarray(sv, dtype=np.float64), np.asarray(explainer.expected_value), req.classes, wanted), None)
