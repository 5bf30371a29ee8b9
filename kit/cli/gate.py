"""``kit gate`` and ``kit card``."""

from __future__ import annotations

import argparse
from typing import Any

from kit.cli._common import given
from kit.config import DEFAULT_BUDGET, GATE_CHECKS, GateConfig


def cmd_gate(args: argparse.Namespace) -> int:
    """Gate a saved bundle, print the report, save it into the bundle, optionally write the card."""
    from kit.bundle import ModelBundle
    from kit.gate import gate

    bundle = ModelBundle.load(args.bundle)
    fields = given(args, metric_floor="metric_floor", max_metric_drop="max_drop", max_p99_ms="max_p99_ms",
                   max_noise_flip_rate="max_flip_rate", max_missing_flip_rate="max_missing_flip_rate",
                   max_ece="max_ece", slice_column="slice", max_slice_gap="max_slice_gap",
                   max_baseline_gap="max_baseline_gap", baseline_action="baseline_action")
    gated, report = gate(bundle, args.data, GateConfig(**fields, skip=tuple(args.skip)), reason=args.override_reason,
                         by="cli")
    print(report)
    out = gated.save(args.out or args.bundle)
    verdict = gated.gate
    assert verdict is not None
    print(f"gate run {report.run} saved to {out}/bundle.json (sections.gate.history); the bundle's verdict is "
          f"run {verdict.run}: {'passed' if verdict.passed else 'FAILED'}")
    if verdict is not report and not verdict.passed:
        from kit.gate._history import how_to_override

        print(f"to replace failed run {verdict.run}, {how_to_override('cli', args.out or args.bundle)}")
    if args.card:
        from kit.card import write_card

        paths = write_card(gated, args.card)
        print(f"model card written to {', '.join(str(p) for p in paths)}")
    return 0 if report.passed and verdict.passed else 1


def cmd_card(args: argparse.Namespace) -> int:
    """Write the model card of a saved bundle."""
    from kit.bundle import ModelBundle
    from kit.card import write_card

    paths = write_card(ModelBundle.load(args.bundle), args.out)
    print(f"model card written to {', '.join(str(p) for p in paths)}")
    return 0


def register(sub: Any) -> None:
    """Add ``gate`` and ``card``."""
    p = sub.add_parser("gate", help="run the release checks on a bundle",
                       description="Run the release gate on a bundle, print the report and record the run in the "
                                   "bundle (sections.gate.history). A pass replaces an earlier failure only with the "
                                   "same settings for the failed checks, or with --override-reason. Exit code 0 when "
                                   "the bundle's verdict passes, 1 when it fails, 2 on bad input.")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--out", help="write the gated bundle here (default: update --bundle in place)")
    p.add_argument("--card", help="also write the model card (Markdown and HTML) into this directory")
    p.add_argument("--data", help="dataset source; default: the bundle's own data, unchanged since training")
    p.add_argument("--slice", help="categorical column for the slice-gap check")
    p.add_argument("--metric-floor", type=float, help="lowest test metric (default: beat the trivial baseline)")
    p.add_argument("--max-drop", type=float, help="largest metric drop of the runtime vs fp32 (default: the "
                                                 f"budget the bundle was quantized with, else {DEFAULT_BUDGET})")
    p.add_argument("--max-baseline-gap", type=float, help="how far the network may trail the best baseline "
                                                           "(default: the shared budget, 0.005)")
    p.add_argument("--baseline-action", choices=["warn", "fail"], help="what a larger gap does (default warn)")
    p.add_argument("--max-p99-ms", type=float, help="largest p99 latency at batch 1, ms (default 50)")
    p.add_argument("--max-flip-rate", type=float, help="largest flip rate under noise (default 0.05)")
    p.add_argument("--max-missing-flip-rate", type=float, help="largest flip rate, one value missing (default 0.15)")
    p.add_argument("--max-ece", type=float, help="largest expected calibration error (default 0.1)")
    p.add_argument("--max-slice-gap", type=float, help="largest metric gap across slices (default 0.1)")
    p.add_argument("--skip", action="append", default=[], choices=GATE_CHECKS, help="a check not to run (repeatable)")
    p.add_argument("--override-reason", help="why this run may replace an earlier failure although it skips a failed "
                                             "check or changes its settings (recorded as an override)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("card", help="write a bundle's model card (Markdown and HTML)")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--out", required=True, help="directory for MODEL_CARD.md and model_card.html")
    p.set_defaults(func=cmd_card)
