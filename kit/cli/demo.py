"""``kit demo``: the whole path on built-in data, ending in a served model."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo from the command line."""
    from kit.demo import run_demo

    run_demo(args.out, data=args.data, trials=args.trials, name=args.name, port=args.port,
             serve=not args.no_serve, smoke=args.smoke)
    return 0


def register(sub: Any) -> None:
    """Add ``kit demo``."""
    p = sub.add_parser("demo", help="run the whole path on built-in data and serve it",
                       description="data -> train -> tune -> explain -> quantize -> gate -> package -> build -> "
                                   "serve at http://127.0.0.1:PORT")
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--data", default="breast_cancer", help="built-in dataset")
    p.add_argument("--trials", type=int, default=12, help="Optuna trials")
    p.add_argument("--name", default="breast-cancer", help="model store name")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--no-serve", action="store_true", help="stop after building the bento")
    p.add_argument("--smoke", action="store_true", help="tiny epochs and trials (CI)")
    p.set_defaults(func=cmd_demo)
