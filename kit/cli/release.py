"""``kit release status`` and ``kit release history``: champion vs challenger on live data, the promotion log."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _thresholds(args: argparse.Namespace) -> Any:
    from kit.release import Thresholds

    return Thresholds(max_error_rate=args.max_error_rate, max_drop=args.max_drop, min_rows=args.min_rows,
                      min_labels=args.min_labels, margin=args.margin, alpha=args.alpha)


def _cmd_status(args: argparse.Namespace) -> int:
    from kit.release import auto_rollback, status
    from kit.release._report import format_status, parse_window

    window = parse_window(args.window)
    report = status(args.name, args.store, window_s=window, thresholds=_thresholds(args))
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(format_status(report))
    if args.apply and report["recommendation"]["action"] == "roll back":
        entry = auto_rollback(args.name, args.store, window_s=window, thresholds=_thresholds(args),
                              by="kit release status --apply")
        if entry is not None:
            print(f"rolled back {entry['from']}: now serving {entry['tag']} only ({entry['reason']})")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from kit.release import history
    from kit.release._report import format_history

    entries = history(args.name, args.store)
    print(format_history(entries) if entries else f"no promotions of {args.name!r} in the release store")
    return 0


def register(sub: Any) -> None:
    """Add ``release status`` and ``release history`` to ``kit``."""
    p = sub.add_parser("release", help="champion vs challenger on live data, and the promotion log")
    rsub = p.add_subparsers(dest="release_command", metavar="SUBCOMMAND", required=True)

    s = rsub.add_parser("status", help="live metrics, agreement, latency and errors per version, and a "
                                       "recommendation (promote / keep / roll back) with the test it used")
    s.add_argument("name", help="model name")
    s.add_argument("--window", default="24h", help="how far back: seconds, or 30m, 24h, 7d (default 24h)")
    s.add_argument("--store", help="release store URL (default: KIT_LOG_URL, else SQLite in $BENTOML_HOME)")
    s.add_argument("--json", action="store_true", help="print the whole report as JSON")
    s.add_argument("--apply", action="store_true", help="roll the challenger back if that is the recommendation "
                                                        "(recorded in the promotion log as automatic)")
    s.add_argument("--max-error-rate", type=float, default=0.05, help="roll back above this error rate")
    s.add_argument("--max-drop", type=float, default=0.05,
                   help="roll back when the live accuracy drops by more (points), or RMSE grows by more (share)")
    s.add_argument("--min-rows", type=int, default=100, help="predictions per version before errors count")
    s.add_argument("--min-labels", type=int, default=100, help="labels per version before live metrics count")
    s.add_argument("--margin", type=float, default=0.01, help="non-inferiority margin for a promotion")
    s.add_argument("--alpha", type=float, default=0.05, help="significance level of the tests")
    s.set_defaults(func=_cmd_status)

    h = rsub.add_parser("history", help="the promotion log of a name, oldest first")
    h.add_argument("name")
    h.add_argument("--store", help="release store URL (default: KIT_LOG_URL, else SQLite in $BENTOML_HOME)")
    h.set_defaults(func=_cmd_history)
