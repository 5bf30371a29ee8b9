"""``kit quantize``."""

from __future__ import annotations

import argparse
from typing import Any

from kit.cli._common import given
from kit.config import DEFAULT_BUDGET, QUANTIZE_OBJECTIVES, QuantizeConfig


def cmd_quantize(args: argparse.Namespace) -> int:
    """Compare variants, print the table and the choice, write the new bundle."""
    from kit.bundle import ModelBundle
    from kit.quantize import attach, compare, select

    bundle = ModelBundle.load(args.bundle)
    fields = given(args, budget="budget", objective="objective", threads="threads", repeats="repeats")
    if args.variants:
        fields["variants"] = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    report = compare(bundle, config=QuantizeConfig(**fields))  # the bundle's own test and training splits
    print(report.table())
    choice = select(report)
    print(choice)
    out = attach(bundle, choice).save(args.out)
    if args.plot:
        report.plot().savefig(args.plot, dpi=120, bbox_inches="tight")
    print(f"bundle with runtime {choice.variant} saved to {out}")
    return 0


def register(sub: Any) -> None:
    """Add ``quantize``."""
    from kit.quantize import VARIANTS

    p = sub.add_parser("quantize", help="compare fp32/int8/fp16 runtimes and pick one within a budget",
                       description="Measure every variant on the bundle's test split, choose the fastest within "
                                   "the metric budget, and write a bundle that uses it.")
    p.add_argument("--bundle", required=True, help="bundle directory to read")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--budget", type=float,
                   help=f"largest accepted metric drop (default {DEFAULT_BUDGET} = {DEFAULT_BUDGET * 100:g} point)")
    p.add_argument("--objective", choices=QUANTIZE_OBJECTIVES, help="column to minimize (default p50_batch1)")
    p.add_argument("--variants", help=f"comma separated, default all: {','.join(VARIANTS)}")
    p.add_argument("--threads", type=int, help="intra-op threads for measuring and serving (default 1)")
    p.add_argument("--repeats", type=int, help="timed runs per batch size (default 300)")
    p.add_argument("--plot", help="write the Pareto plot to this image file")
    p.set_defaults(func=cmd_quantize)
