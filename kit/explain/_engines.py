"""The SHAP engines behind :func:`kit.explain.explain`, and the per-bundle cache they share.

Two spaces are in play:

* the **network space**: the preprocessor's float32 output (standardized numbers, one-hot
  columns). ``deep`` and ``gradient`` explain the torch network there; their values are then
  folded back to the original features by summing each feature's columns (sums keep additivity).
* the **encoded raw space**: one column per original feature, numbers as given (missing ->
  training median) and categories as their code (missing -> training mode). ``permutation`` and
  ``kernel`` mask whole original features there, decode the rows and call ``bundle.infer``, so
  they explain whatever runtime the bundle uses (torch, ONNX int8, ...).

What is explained (one scalar per row, the "explained output"):

* regression: the predicted value in target units;
* classification, ``output="logit"`` (default): for two classes the log-odds of the chosen class,
  ``log p_c - log p_other``; for more, the centered logit ``log p_c - mean_k log p_k``. Both are
  linear in the network's logits, so DeepLIFT (DeepExplainer) is exactly additive on them;
* classification, ``output="probability"``: ``p_c``. Softmax mixes outputs, so DeepExplainer is only
  approximately additive there and ``auto`` usually falls back.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.errors import require
from kit.preprocess import cat_str, is_missing

if TYPE_CHECKING:
    from kit.bundle import ModelBundle, Prediction

UNSEEN = "\x00unseen"
"""Decoded value of a category code the preprocessor never saw (only with unknown_category='ignore')."""


def shap_module() -> Any:
    """Import shap (quietly: its import emits matplotlib deprecation warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return require("shap", "explain")


class Unsupported(Exception):
    """An engine cannot explain this network (the reason is the message)."""


# -- spaces ------------------------------------------------------------------------------------
def column_groups(bundle: ModelBundle) -> list[list[int]]:
    """For each original feature, the indices of its columns in the network input."""
    pre = bundle.preprocessor
    groups: list[list[int]] = []
    j = 0
    for name in pre.feature_names_in_:
        width = 1 if pre.kinds_[name] == "numeric" else len(pre.categories_[name])
        groups.append(list(range(j, j + width)))
        j += width
    return groups


def fold(values: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """Sum network-space values (n, d) into original-feature values (n, f)."""
    return np.stack([values[:, g].sum(axis=1) for g in groups], axis=1)


def encode(bundle: ModelBundle, frame: pd.DataFrame) -> np.ndarray:
    """Validated raw rows -> float64 (n, f): numbers (missing -> median), category codes (missing -> mode)."""
    pre = bundle.preprocessor
    out = np.empty((len(frame), len(pre.feature_names_in_)), dtype=np.float64)
    for j, name in enumerate(pre.feature_names_in_):
        if pre.kinds_[name] == "numeric":
            x = pd.to_numeric(pd.Series(frame[name].to_numpy(dtype=object)), errors="coerce").to_numpy(np.float64)
            out[:, j] = np.where(np.isnan(x), pre.medians_[name], x)
        else:
            index = {c: i for i, c in enumerate(pre.categories_[name])}
            mode = index[pre.modes_[name]]
            out[:, j] = [mode if is_missing(v) else index.get(cat_str(v), -1) for v in frame[name].to_numpy()]
    return out


def decode(bundle: ModelBundle, codes: np.ndarray) -> pd.DataFrame:
    """Encoded rows back to raw rows the bundle accepts (inverse of :func:`encode` up to imputation)."""
    pre = bundle.preprocessor
    cols: dict[str, Any] = {}
    for j, name in enumerate(pre.feature_names_in_):
        if pre.kinds_[name] == "numeric":
            cols[name] = codes[:, j]
        else:
            table = np.array([*pre.categories_[name], UNSEEN], dtype=object)
            cols[name] = table[np.rint(codes[:, j]).astype(np.int64)]  # code -1 -> UNSEEN
    return pd.DataFrame(cols)


def explained_outputs(bundle: ModelBundle, pred: Prediction, output: str) -> np.ndarray:
    """Every class's explained output from a prediction, shape (n, k) (k = 1 for regression)."""
    if pred.values is not None:
        return pred.values.reshape(-1, 1).astype(np.float64)
    assert pred.probabilities is not None
    p = pred.probabilities.astype(np.float64)
    if output == "probability":
        return p
    logp = np.log(np.clip(p, 1e-300, None))
    if p.shape[1] == 2:
        return np.stack([logp[:, 0] - logp[:, 1], logp[:, 1] - logp[:, 0]], axis=1)
    centered: np.ndarray = logp - logp.mean(axis=1, keepdims=True)
    return centered


# -- torch heads -------------------------------------------------------------------------------
def _head(bundle: ModelBundle, output: str, cls: int) -> Any:
    """A torch module mapping network outputs to the explained output of class ``cls``."""
    torch = require("torch", "train")
    nn = torch.nn
    k = int(bundle.spec["n_out"])
    linear = nn.Linear(k, 1)
    with torch.no_grad():
        if bundle.task == "regression":
            scale = bundle.target_scaling or {"mean": 0.0, "std": 1.0}
            linear.weight.fill_(float(scale["std"]))
            linear.bias.fill_(float(scale["mean"]))
            return linear
        weight = torch.zeros(1, k, dtype=torch.float64)
        if output == "probability":
            weight[0, cls] = 1.0
        elif k == 2:
            weight[0, cls], weight[0, 1 - cls] = 1.0, -1.0
        else:
            weight[0] = -1.0 / k
            weight[0, cls] += 1.0
        linear.weight.copy_(weight)
        linear.bias.zero_()
    if output == "probability":
        return nn.Sequential(nn.Softmax(dim=1), linear)
    return linear


def _register_silu() -> None:
    """Teach shap's DeepLIFT that SiLU is elementwise (the same rescale rule as its GELU)."""
    from shap.explainers._deep import deep_pytorch

    handlers = deep_pytorch.op_handler
    if "SiLU" not in handlers:
        handlers["SiLU"] = deep_pytorch.nonlinear_1d


# -- the per-bundle cache ----------------------------------------------------------------------
@dataclass
class Context:
    """What the engines need for one bundle + background; cached so ``/explain`` stays fast.

    Attributes:
        bundle: The bundle (weakly referenced by the cache).
        background: The raw background rows (validated, schema order).
        bg_net: Background in network space, float64.
        bg_enc: Background in encoded raw space, float64.
        lock: Held while an engine runs (shap's torch explainers hook into the module).
        auto: Memo of the auto chain: the method picked and the reasons gathered before it.
    """

    bundle: ModelBundle
    background: pd.DataFrame
    bg_net: np.ndarray
    bg_enc: np.ndarray
    fingerprint: str
    device: str = "cpu"
    lock: threading.RLock = field(default_factory=threading.RLock)
    auto: dict[tuple[str, float], tuple[str, list[str]]] = field(default_factory=dict)
    _objects: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def memo(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """Build an object once per context (networks, shap explainers)."""
        if key not in self._objects:
            self._objects[key] = make()
        return self._objects[key]

    def network(self, output: str, cls: int, dtype: str) -> Any:
        """The bundle's torch network followed by the explained-output head, in eval mode."""
        def make() -> Any:
            torch = require("torch", "train")
            model = torch.nn.Sequential(self.bundle.module(), _head(self.bundle, output, cls)).eval()
            return model.to(dtype=getattr(torch, dtype), device=self.device)

        return self.memo(("net", output, cls, dtype), make)

    def unsupported_layers(self) -> list[str]:
        """Layer types and functional operations of the network that shap's DeepLIFT has no rule for."""
        shap_module()
        from shap.explainers._deep import deep_pytorch

        from kit.explain._rules import missing_rules

        _register_silu()
        return list(self.memo(("missing_rules",), lambda: missing_rules(self.network("logit", 0, "float64"),
                                                                          deep_pytorch.op_handler)))


_CACHE: OrderedDict[int, tuple[weakref.ref[Any], Context]] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()


def fingerprint(bundle: ModelBundle, background_key: str) -> str:
    """Changes when the network, preprocessor or background changes."""
    digest = hashlib.sha256(background_key.encode())
    digest.update(json.dumps(bundle.spec, sort_keys=True).encode())
    digest.update(json.dumps(bundle.target_scaling, sort_keys=True).encode())
    digest.update(bundle.preprocessor.to_json().encode())
    for name in sorted(bundle.weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(bundle.weights[name]).tobytes())
    return digest.hexdigest()


def context(bundle: ModelBundle, background: pd.DataFrame, background_key: str, device: str = "cpu") -> Context:
    """The cached :class:`Context` of ``bundle`` with this background (built on first use)."""
    key = fingerprint(bundle, background_key) + device
    with _CACHE_LOCK:
        hit = _CACHE.get(id(bundle))
        if hit is not None and hit[0]() is bundle and hit[1].fingerprint == key:
            _CACHE.move_to_end(id(bundle))
            return hit[1]
    ctx = Context(bundle, background, bundle.transform(background).astype(np.float64),
                  encode(bundle, background), key, device)
    with _CACHE_LOCK:
        _CACHE[id(bundle)] = (weakref.ref(bundle), ctx)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return ctx


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (shap's samplers use it) and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# -- engines -----------------------------------------------------------------------------------
@dataclass
class Request:
    """One engine call: rows in both spaces, the class index per row, and options."""

    x_net: np.ndarray
    x_enc: np.ndarray
    classes: np.ndarray
    output: str
    seed: int
    nsamples: int | None = None


Result = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""values (n, f) in original features, base values (n,), and the explained output the engine observed
(n,) when it computed one itself (``None``: the caller's ``bundle.infer`` output is the reference)."""

Engine = Callable[[Context, Request], Result]
"""(context, request) -> :data:`Result`."""


def deeplift(explainer: Any, model: Any, x: Any, bg: Any, chunk_pairs: int = 10_000) -> np.ndarray:
    """Attributions of shap's DeepExplainer, computed for many rows in one backward pass.

    shap's ``PyTorchDeep.shap_values`` runs one backward pass per row on ``[row tiled; background]``;
    its DeepLIFT hooks only pair the i-th element of the first half with the i-th of the second,
    so stacking ``[rows tiled; background tiled]`` gives the same values for every row at once.
    ``tests/test_explain.py`` checks the two agree.

    Args:
        explainer: A ``shap.DeepExplainer`` (its hooks and rules are used).
        model: Its torch model (one output).
        x: Rows, tensor (n, d).
        bg: Background, tensor (b, d).
        chunk_pairs: Row x background pairs per backward pass (bounds memory).

    Returns:
        Attributions, float64 (n, d).
    """
    torch = require("torch", "train")
    from shap.explainers._deep import deep_pytorch

    inner = explainer.explainer
    n, b = x.shape[0], bg.shape[0]
    step = max(1, chunk_pairs // b)
    out = np.zeros((n, x.shape[1]))
    handles = inner.add_handles(model, deep_pytorch.add_interim_values, deep_pytorch.deeplift_grad)
    try:
        for s in range(0, n, step):
            rows = x[s:s + step]
            tiled = rows.repeat_interleave(b, dim=0)
            refs = bg.repeat(len(rows), 1)
            joint = torch.cat([tiled, refs]).requires_grad_()
            model.zero_grad()
            (grad,) = torch.autograd.grad(model(joint)[:, 0].sum(), joint)
            phi = (grad[: len(tiled)] * (tiled - refs)).reshape(len(rows), b, -1).mean(dim=1)
            out[s:s + len(rows)] = phi.detach().double().cpu().numpy()
    finally:
        for handle in handles:
            handle.remove()
        inner.remove_attributes(model)
    return out


def _torch_engine(ctx: Context, req: Request, kind: str) -> tuple[np.ndarray, np.ndarray]:
    torch = require("torch", "train")
    shap = shap_module()
    dtype = "float64" if kind == "deep" else "float32"  # shap's GradientExplainer builds float32 samples
    n, d = req.x_net.shape
    values = np.zeros((n, d))
    base = np.zeros(n)
    bg = torch.from_numpy(ctx.bg_net.astype(dtype)).to(ctx.device)
    with ctx.lock:
        for cls in np.unique(req.classes):
            rows = np.flatnonzero(req.classes == cls)
            model = ctx.network(req.output, int(cls), dtype)
            x = torch.from_numpy(req.x_net[rows].astype(dtype)).to(ctx.device)
            if kind == "deep":
                _register_silu()
                explainer = ctx.memo(("deep", req.output, int(cls)), functools.partial(shap.DeepExplainer, model, bg))
                values[rows] = deeplift(explainer, model, x, bg)
            else:
                explainer = ctx.memo(("gradient", req.output, int(cls)),
                                     functools.partial(shap.GradientExplainer, model, bg))
                with _numpy_seed(req.seed):
                    sv = explainer.shap_values(x, nsamples=req.nsamples or 200, rseed=req.seed)
                values[rows] = np.asarray(sv, dtype=np.float64).reshape(len(rows), d)
            with torch.no_grad():
                base[rows] = float(model(bg).double().mean())
    return fold(values, column_groups(ctx.bundle)), base


def deep(ctx: Context, req: Request) -> Result:
    """DeepExplainer of shap (DeepLIFT rescale rule) on the float64 torch network."""
    missing = ctx.unsupported_layers()
    if missing:
        raise Unsupported(f"DeepExplainer has no rule for {', '.join(missing)}")
    return (*_torch_engine(ctx, req, "deep"), None)


def gradient(ctx: Context, req: Request) -> Result:
    """GradientExplainer of shap (expected gradients, seeded) on the float32 torch network."""
    return (*_torch_engine(ctx, req, "gradient"), None)
