"""``kit explain``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kit.cli._common import given
from kit.config import EXPLAIN_METHODS, ExplainConfig


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain test rows, print the ranking, save plots and the bundle."""
    from kit.bundle import ModelBundle
    from kit.explain import attach, explain

    bundle = ModelBundle.load(args.bundle)
    config = ExplainConfig(**given(args, rows="rows", method="method", background_size="background_size",
                                   background_kind="background_kind", seed="seed"))
    data = bundle.reload_data(args.data)  # the recorded data, unchanged, unless --data names another file
    if bundle.kind == "image":
        return _explain_images(args, bundle, data, config)
    ex = explain(bundle, data.splits.test.X.iloc[: config.rows], background=data.splits.train.X, config=config)
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


def _explain_images(args: argparse.Namespace, bundle: Any, data: Any, config: ExplainConfig) -> int:
    """Per-pixel SHAP of an image model: the overlay and the global map as plots, the background stored."""
    from kit.explain import attach_images, explain_images

    ex = explain_images(bundle, data.splits.test.X.iloc[: config.rows], background=data.splits.train.X,
                        config=config)
    print(f"{ex.method} ({ex.why})")
    print(f"explained {len(ex.values)} test images: {ex.output}; additivity error {ex.additivity_error:.2e}; "
          f"{ex.elapsed:.2f} s")
    plots_dir = Path(args.plots) if args.plots else (Path(args.out) / "plots" if args.out else None)
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
        ex.plot_overlay().savefig(plots_dir / "shap_overlay.png", dpi=110, bbox_inches="tight")
        ex.plot_global().savefig(plots_dir / "shap_global_map.png", dpi=110, bbox_inches="tight")
        print(f"plots saved to {plots_dir}")
    if args.out:
        print(f"bundle with the stored explanation saved to {attach_images(bundle, ex).save(args.out)}")
    return 0


def register(sub: Any) -> None:
    """Add ``explain``."""
    p = sub.add_parser("explain", help="SHAP explanation of a saved bundle",
                       description="Explain a bundle's test rows with SHAP (background: training rows), "
                                   "print the global ranking, save plots and the bundle with the explanation. An "
                                   "image model gets per-pixel values: the overlay and the mean |SHAP| map.")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--rows", type=int, help="test rows to explain (default 200)")
    p.add_argument("--out", help="write the bundle with the stored explanation here (plots in OUT/plots)")
    p.add_argument("--plots", help="directory for PNG plots (default OUT/plots when --out is given)")
    p.add_argument("--method", choices=list(EXPLAIN_METHODS), help="default auto")
    p.add_argument("--background-size", type=int, help="default 100")
    p.add_argument("--background-kind", choices=["sample", "kmeans"], help="default sample")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--data", help="load the data from this path instead of the one recorded in the bundle")
    p.set_defaults(func=cmd_explain)
