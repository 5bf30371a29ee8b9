"""Knowledge distillation: train narrower students on the original network's soft outputs plus the labels.

A student is a network like any other (a built-in or a user's builder, by reference, with its own
parameters), built and checked by :func:`kit.nets.prepare`, trained by :func:`~kit.quantize._fit.fit`
on the bundle's own training split, and stored as a bundle of its own (spec, weights, fp32 ONNX
export) whose lineage says whom it learned from and how.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kit.errors import BuilderError
from kit.quantize._fit import Rows, derive, fit

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


def student_params(bundle: ModelBundle, net: str | None, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The student's builder and parameters: ``params`` over the teacher's own when the builder is the same."""
    teacher = bundle.net
    if net is None or net == teacher.builder:
        return teacher.builder, {**teacher.params, **params}
    return net, dict(params)


def distill(bundle: ModelBundle, rows: Rows, students: Sequence[Mapping[str, Any]], *, net: str | None,
            epochs: int, temperature: float, alpha: float, seed: int = 0,
            should_stop: Callable[[], bool] = lambda: False,
            progress: Callable[[str], None] = lambda _: None) -> tuple[list[ModelBundle], list[str]]:
    """Train one student per entry of ``students`` from ``bundle``'s network.

    Args:
        bundle: The teacher.
        rows: Its training and validation rows and outputs (:meth:`~kit.quantize._fit.Rows.of`).
        students: Builder parameters per student, e.g. ``[{"hidden": [32]}]``.
        net: The students' builder; ``None``: the teacher's.
        epochs: Most epochs per student (early stopping on the validation loss).
        temperature: Softmax temperature of the soft targets.
        alpha: Weight of the teacher's term; ``1 - alpha`` goes to the labels.
        seed: Seed of the initialization and shuffling.
        should_stop: Polled between students and epochs.
        progress: Told which student starts.

    Returns:
        The students' bundles, and one line per student that could not be built or was not started.
    """
    from kit import nets
    from kit.config import TrainConfig
    from kit.errors import require

    torch = require("torch", "train")
    teacher = bundle.net
    out: list[ModelBundle] = []
    problems: list[str] = []
    for given in students:
        builder, params = student_params(bundle, net, given)
        if should_stop():
            problems.append(f"student {builder} {dict(given)}: not started (stopped)")
            continue
        progress(f"distill into {builder} {dict(given)}")
        torch.manual_seed(seed)
        try:
            spec, module, source = nets.prepare(TrainConfig(net=builder, net_params=params), teacher.n_in,
                                                teacher.n_out)
        except BuilderError as exc:
            problems.append(f"student {builder} {dict(given)}: {exc.message}")
            continue
        tuned = fit(module, rows, epochs=epochs, temperature=temperature, alpha=alpha, seed=seed, lr=3e-3,
                    patience=max(10, epochs // 5), should_stop=should_stop)
        step = {"step": "distill", "teacher": teacher.describe(), "student": dict(given), "temperature": temperature,
                "alpha": alpha, "train": tuned}
        out.append(derive(bundle, spec, module, source, step))
    return out, problems
