"""The ``kit`` command.

Each step module contributes its subcommands through ``register_cli(subparsers)``; this file
only collects them, runs the chosen one and turns a :class:`~kit.errors.KitError` into one
clear line on stderr and exit code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kit.errors import KitError

COMMAND_MODULES: tuple[str, ...] = (
    "kit.commands",
    "kit.tune",
    "kit.explain",
    "kit.quantize",
    "kit.gate",
    "kit.package",
    "kit.runner",
    "kit.demo",
)
"""Modules that define ``register_cli``; a module not present in this install is skipped."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="kit", description="From a notebook experiment to a production service.")
    parser.add_argument("--version", action="version", version=f"kit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        register = getattr(module, "register_cli", None)
        if register is not None:
            register(sub)
    return parser


def _version() -> str:
    from kit import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KitError as exc:
        where = ", ".join(f"{k}={v}" for k, v in (("file", exc.file), ("field", exc.field), ("row", exc.row))
                          if v is not None)
        message = " ".join(exc.message.split())  # one line, even when a parser's message has several
        print(f"kit {args.command}: error: {message}" + (f" [{where}]" if where else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kit {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
