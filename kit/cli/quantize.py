"""``kit quantize`` and ``kit compress``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kit.cli._common import given
from kit.config import CALIBRATIONS, DEFAULT_BUDGET, QUANTIZE_OBJECTIVES, CompressConfig, QuantizeConfig
from kit.errors import ConfigError


def _write_report(path: str | None, data: dict[str, Any]) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"report written to {target}")


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
    _write_report(args.report, report.to_json(choice.variant))
    print(f"bundle with runtime {choice.variant} saved to {out}")
    return 0


def _students(text: str | None) -> tuple[dict[str, Any], ...] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--students must be a JSON list of parameter mappings, e.g. '[{{\"hidden\": [32]}}]': "
                          f"{exc.msg}", field="students") from None
    if not isinstance(value, list):
        raise ConfigError("--students must be a JSON list of parameter mappings", field="students")
    return tuple(value)


def cmd_compress(args: argparse.Namespace) -> int:
    """Search pruned, distilled and int8 candidates, print the frontier and the choice, write the chosen bundle."""
    from kit.bundle import ModelBundle
    from kit.quantize import compress

    bundle = ModelBundle.load(args.bundle)
    fields = given(args, budget="budget", objective="objective", threads="threads", repeats="repeats",
                   time_budget="time_budget", student_net="student_net")
    for name in ("sparsities", "student_sparsities"):
        if (value := getattr(args, name)) is not None:
            try:
                fields[name] = tuple(float(v) for v in value.split(",") if v.strip())
            except ValueError:
                raise ConfigError(f"--{name.replace('_', '-')} must be comma separated shares, e.g. 0.5,0.75, "
                                  f"but got {value!r}", field=name) from None
    if (students := _students(args.students)) is not None:
        fields["students"] = students
    if args.calibrations:
        fields["calibrations"] = tuple(v.strip() for v in args.calibrations.split(",") if v.strip())
    if args.no_int8:
        fields["int8"] = False
    result = compress(bundle, CompressConfig(**fields), progress=lambda stage: print(f"... {stage}", flush=True))
    print(result.report)
    if args.plot:
        result.report.plot().savefig(args.plot, dpi=120, bbox_inches="tight")
    _write_report(args.report, result.report.to_json())
    out = result.bundle.save(args.out)
    print(result.reason)
    print(f"bundle {result.report.chosen} saved to {out}")
    return 0


def _shared(p: argparse.ArgumentParser, objective: str) -> None:
    """The options both commands take: input, output, budget, objective."""
    p.add_argument("--bundle", required=True, help="bundle directory to read")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--budget", type=float,
                   help=f"largest accepted metric drop (default {DEFAULT_BUDGET} = {DEFAULT_BUDGET * 100:g} point)")
    p.add_argument("--objective", choices=QUANTIZE_OBJECTIVES, help=f"column to minimize (default {objective})")


def register(sub: Any) -> None:
    """Add ``quantize`` and ``compress``."""
    from kit.quantize import VARIANTS

    p = sub.add_parser("quantize", help="compare fp32/int8/fp16 runtimes and pick one within a budget",
                       description="Measure every variant on the bundle's test split, choose the fastest within "
                                   "the metric budget, and write a bundle that uses it.")
    _shared(p, "p50_batch1")
    p.add_argument("--variants", help=f"comma separated, default all: {','.join(VARIANTS)}")
    p.add_argument("--threads", type=int, help="intra-op threads for measuring and serving (default 1)")
    p.add_argument("--repeats", type=int, help="timed runs per batch size (default 300)")
    p.add_argument("--plot", help="write the Pareto plot to this image file")
    p.add_argument("--report", help="write the table as JSON to this file")
    p.set_defaults(func=cmd_quantize)

    c = sub.add_parser("compress", help="search pruned, distilled and int8 networks within a budget",
                       description="Prune the network's hidden units, distill narrower students, search static "
                                   "int8 calibrations; measure every candidate on the bundle's test split and "
                                   "write the fastest within the metric budget (the original when none is).")
    _shared(c, "p50_batch64")
    c.add_argument("--time-budget", type=float, help="seconds after which no new candidate is started")
    c.add_argument("--sparsities", help="pruning schedule, comma separated shares (default 0.5,0.75,0.9,0.95)")
    c.add_argument("--students", help='JSON list of student parameters (default: hidden [128], [64] and [32], '
                                      'dropout 0), e.g. \'[{"hidden": [32]}]\'')
    c.add_argument("--student-net", help="the students' builder (default: the original network's)")
    c.add_argument("--student-sparsities", help="pruning schedule for each student after distillation (stacked "
                                                "candidates), comma separated shares; empty: none (default 0.5)")
    c.add_argument("--calibrations", help=f"static int8 calibration methods, comma separated: {','.join(CALIBRATIONS)}")
    c.add_argument("--no-int8", action="store_true", help="fp32 ONNX candidates only")
    c.add_argument("--threads", type=int, help="intra-op threads for measuring and serving (default 1)")
    c.add_argument("--repeats", type=int, help="timed runs per batch size (default 200)")
    c.add_argument("--plot", help="write the frontier plot to this image file")
    c.add_argument("--report", help="write the table as JSON to this file")
    c.set_defaults(func=cmd_compress)
