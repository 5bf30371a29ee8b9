"""``kit demo``: the whole path on the built-in breast-cancer data, ending in a served model.

data → train → tune → explain → quantize → gate (+ model card) → package → build → serve.
Every step below is the same public function a notebook calls; this module only chains them and
prints what a user wants to see after each one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kit.config import DataConfig, TrainConfig


def _step(n: int, total: int, title: str) -> float:
    print(f"\n== [{n}/{total}] {title} " + "=" * max(0, 60 - len(title)), flush=True)
    return time.perf_counter()


def _done(start: float) -> None:
    print(f"   ({time.perf_counter() - start:.1f}s)", flush=True)


def run_demo(out: str | Path = "runs/demo", *, data: str = "breast_cancer", trials: int = 12,
             name: str = "breast-cancer", port: int = 3000, serve: bool = True, smoke: bool = False) -> dict[str, Any]:
    """Run every step and (unless ``serve=False``) serve the result on 127.0.0.1:``port``.

    Args:
        out: Directory for bundles, plots, the model card and the tuning study.
        data: Built-in dataset name.
        trials: Optuna trials.
        name: Model store name.
        port: Port of the local server.
        serve: Start ``bentoml serve`` at the end (blocks until interrupted).
        smoke: Tiny epochs and trials (CI).

    Returns:
        Paths, tags and headline figures of the run.
    """
    from kit import explain as kex
    from kit import gate as kgate
    from kit import package, quantize
    from kit.card import write_card
    from kit.config import GateConfig, QuantizeConfig, TuneConfig
    from kit.data import load
    from kit.metrics import table as metrics_table
    from kit.train import train
    from kit.tune import tune

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = 9 if serve else 8
    train_config = TrainConfig().smoke() if smoke else TrainConfig()
    tune_config = TuneConfig(n_trials=trials, run_dir=str(out / "tune"), study_name=f"demo-{int(time.time())}",
                             epochs=train_config.epochs, seed=0)
    quantize_config = QuantizeConfig()
    gate_config = GateConfig()
    if smoke:
        tune_config, quantize_config, gate_config = tune_config.smoke(), quantize_config.smoke(), gate_config.smoke()

    t = _step(1, total, f"data: {data}")
    data_config = DataConfig(source=data)
    dataset = load(data_config)
    summary = dataset.summary()
    print(f"   {summary.rows} rows, {summary.features} features, task {summary.task}")
    if summary.class_balance is not None:
        print("   " + summary.class_balance.to_string().replace("\n", "\n   "))
    _done(t)

    t = _step(2, total, "train (PyTorch MLP, early stopping)")
    base = train(dataset, train_config, data_config=data_config, progress=True)
    print(metrics_table(base.bundle.metrics))
    base.bundle.save(out / "trained")
    _done(t)

    t = _step(3, total, f"tune (Optuna TPE + median pruning, {tune_config.n_trials} trials)")
    tuned = tune(dataset, tune_config, train=train_config)
    print(f"   trials: {tuned.counts()}; best {tuned.metric} {tuned.best_value:.4f} (trial {tuned.best_trial})")
    assert tuned.bundle is not None
    metric = base.bundle.primary_metric
    better = tuned.bundle.metrics["valid"][metric] >= base.bundle.metrics["valid"][metric]
    bundle = tuned.bundle if better else base.bundle
    print(f"   keeping the {'tuned' if better else 'untuned'} model (valid {metric} "
          f"{bundle.metrics['valid'][metric]:.4f}); test {metric} {bundle.metrics['test'][metric]:.4f}")
    tuned.save_plots(out / "tune_plots.html")
    _done(t)

    t = _step(4, total, "explain (SHAP)")
    explanation = kex.explain(bundle)  # the bundle's own test rows, background from its training rows
    print(f"   method {explanation.method}: {explanation.why}; additivity error {explanation.additivity_error:.1e}")
    print("   " + explanation.importance().head(5).to_string().replace("\n", "\n   "))
    bundle = kex.attach(bundle, explanation)
    _done(t)

    t = _step(5, total, "quantize (torch fp32 vs ONNX Runtime fp32 / int8 / fp16)")
    report = quantize.compare(bundle, config=quantize_config)
    print(report.table())
    choice = quantize.select(report)
    print(f"   chosen: {choice.variant} (budget {choice.budget})")
    bundle = quantize.attach(bundle, choice)
    _done(t)

    t = _step(6, total, "gate (release checks) and model card")
    bundle, gate_report = kgate.gate(bundle, config=gate_config)
    print(gate_report)
    bundle_dir = bundle.save(out / "bundle")
    card_files = write_card(bundle, out / "card")
    print(f"   bundle: {bundle_dir}; model card: {', '.join(str(p) for p in card_files)}")
    _done(t)

    t = _step(7, total, "package (BentoML model store) and promote")
    tag = package.save(bundle, name)
    package.promote(tag, "make demo")
    print(f"   model tag: {tag} (promoted)")
    _done(t)

    t = _step(8, total, "build the bento")
    bento = package.build(tag)
    print(f"   bento: {bento}  (containerize: bentoml containerize {bento})")
    _done(t)

    result = {"bundle": str(bundle_dir), "tag": tag, "bento": bento, "variant": choice.variant,
              "gate_passed": gate_report.passed, "test_metrics": bundle.metrics["test"]}
    if serve:
        _step(9, total, f"serve at http://127.0.0.1:{port}")
        print(f"   try: curl -s -X POST http://127.0.0.1:{port}/predict -H 'Content-Type: application/json' "
              f"-d '{{\"rows\": [...]}}'   (Ctrl+C to stop)", flush=True)
        package.serve(bento=bento, port=port)
    return result
