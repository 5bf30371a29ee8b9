"""The short training loop compression shares: fine-tuning a pruned network and training a student.

Both learn from the original network (the teacher) and the labels of the bundle's own training split:
``alpha * T² * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)`` for
classifiers (Hinton et al., 2015), ``alpha * MSE(student, teacher) + (1 - alpha) * MSE(student, targets)``
in standardized units for regression. The best epoch on the validation split's loss against the labels
is kept (early stopping with the best weights restored).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import require

if TYPE_CHECKING:
    from torch import nn

    from kit.bundle import ModelBundle
    from kit.nets import NetSpec, Source


@dataclass
class Rows:
    """The preprocessed training and validation rows and the teacher's outputs on the training rows.

    Attributes:
        x_train: Training inputs (float32).
        y_train: Training targets: class codes, or standardized values for regression.
        x_valid: Validation inputs.
        y_valid: Validation targets, coded like ``y_train``.
        teacher: The original network's raw outputs (logits, or standardized values) on ``x_train``.
        task: The bundle's task.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    teacher: np.ndarray
    task: str

    @classmethod
    def of(cls, bundle: ModelBundle) -> Rows:
        """The bundle's own split (:meth:`~kit.bundle.ModelBundle.reload_data`) and the teacher's outputs on it."""
        torch = require("torch", "train")
        splits = bundle.reload_data().splits

        def target(y: Any) -> np.ndarray:
            if bundle.task != "regression":
                return np.asarray(y, dtype=np.int64)
            scale = bundle.target_scaling or {"mean": 0.0, "std": 1.0}
            return ((np.asarray(y, dtype=np.float32) - scale["mean"]) / scale["std"]).reshape(-1, 1).astype(np.float32)

        x_train = np.ascontiguousarray(bundle.transform(splits.train.X), dtype=np.float32)
        with torch.inference_mode():
            teacher = bundle.module()(torch.from_numpy(x_train)).numpy()
        return cls(x_train, target(splits.train.y), np.ascontiguousarray(bundle.transform(splits.valid.X),
                                                                          dtype=np.float32),
                   target(splits.valid.y), teacher, bundle.task)


def fit(module: nn.Module, rows: Rows, *, epochs: int, temperature: float, alpha: float, lr: float = 2e-3,
        batch_size: int = 128, seed: int = 0, patience: int = 10,
        should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Train ``module`` in place on the teacher's outputs plus the labels; keep its best validation epoch.

    Args:
        module: The network to train (a pruned copy, or a fresh student).
        rows: From :meth:`Rows.of`.
        epochs: Most epochs.
        temperature: Softmax temperature of the soft targets (classifiers).
        alpha: Weight of the teacher term; ``1 - alpha`` goes to the labels.
        lr: Peak learning rate of AdamW (cosine decay to zero over ``epochs``).
        batch_size: Rows per step.
        seed: Seed of the shuffling.
        patience: Epochs without a better validation loss before stopping.
        should_stop: Polled after every epoch; ``True`` ends training with the best weights so far.

    Returns:
        What happened: epochs run, best epoch and its validation loss.
    """
    torch = require("torch", "train")
    functional = torch.nn.functional
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    classify = rows.task != "regression"
    xtr, xva = torch.from_numpy(rows.x_train), torch.from_numpy(rows.x_valid)
    ytr, yva = torch.from_numpy(rows.y_train), torch.from_numpy(rows.y_valid)
    soft = torch.from_numpy(rows.teacher)
    if classify:
        soft = torch.softmax(soft / temperature, dim=1)

    def loss_of(out: Any, idx: Any) -> Any:
        if classify:
            kd = functional.kl_div(functional.log_softmax(out / temperature, dim=1), soft[idx],
                                   reduction="batchmean") * temperature ** 2
            return alpha * kd + (1 - alpha) * functional.cross_entropy(out, ytr[idx])
        return alpha * functional.mse_loss(out, soft[idx]) + (1 - alpha) * functional.mse_loss(out, ytr[idx])

    def valid_loss() -> float:
        module.eval()
        with torch.no_grad():
            out = module(xva)
        module.train()
        return float(functional.cross_entropy(out, yva) if classify else functional.mse_loss(out, yva))

    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    n = len(xtr)
    bs = min(batch_size, n)
    total = max(1, epochs * math.ceil(n / bs))
    best, best_epoch, run, step = valid_loss(), 0, 0, 0
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.train()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            if len(idx) < 2:
                continue
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = loss_of(module(xtr[idx]), idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        run = epoch
        value = valid_loss()
        if value < best:
            best, best_epoch = value, epoch
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        if epoch - best_epoch >= patience or should_stop():
            break
    module.load_state_dict(best_state)
    module.eval()
    return {"epochs_run": run, "best_epoch": best_epoch, "valid_loss": best}


def derive(bundle: ModelBundle, spec: NetSpec, module: nn.Module, source: Source, step: dict[str, Any]
           ) -> ModelBundle:
    """A bundle of the smaller network ``module`` (``spec``) made from ``bundle``'s: same preprocessor and data.

    Its metrics are re-measured on the bundle's own validation and test rows, its fp32 ONNX export is
    made now (:func:`~kit.quantize.ensure_export`), ``lineage["compression"]`` gains ``step``, and what
    described the other network is dropped (quantization, explanation, the gate's verdict).
    """
    from kit import nets
    from kit.quantize._export import ONNX_ARTIFACT, ensure_export

    clone = bundle.copy()
    clone.spec = spec.to_dict()
    clone.weights = {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
    clone.artifacts = {k: v for k, v in clone.artifacts.items()
                       if k != ONNX_ARTIFACT and not (k.startswith("model.") and k.endswith(".onnx"))}
    clone.artifacts[nets.SOURCE_ARTIFACT] = source.text.encode("utf-8")
    clone.runtime_info = {"name": "torch", "variant": "fp32"}
    for name in ("quantization", "explanation", "gate", "compression"):
        clone.sections.pop(name, None)
    for name in ("quantize", "gate", "explain", "compress"):
        clone.configs.pop(name, None)
    clone.lineage["compression"] = [*bundle.lineage.get("compression", []),
                                    {**step, "net": spec.describe(), "parameters": parameter_count(clone)}]
    data = clone.reload_data()
    splits, dataset = data.splits, data.dataset
    clone.metrics = {"valid": clone.evaluate(splits.valid.X, dataset.decode_target(splits.valid.y)),
                     "test": clone.evaluate(splits.test.X, dataset.decode_target(splits.test.y))}
    ensure_export(clone)
    return clone


def parameter_count(bundle: ModelBundle) -> int:
    """Trainable parameters and buffers of the bundle's network (every stored weight value)."""
    return sum(int(np.prod(v.shape)) for v in bundle.weights.values())
