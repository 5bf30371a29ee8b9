"""The ``kit`` command: every subcommand lives in this package and only calls library functions.

The command tree is static (one module per step, each with a ``register(subparsers)``):

==============  ==============================================================
``data``        ``kit data``, ``kit train``
``tune``        ``kit tune``, ``kit tune-worker``
``explain``     ``kit explain``
``quantize``    ``kit quantize``, ``kit compress``
``gate``        ``kit gate``, ``kit card``
``package``     ``kit package``, ``build``, ``serve``, ``models``, ``promote``, ``rollback``, ``predict``
``release``     ``kit release status``, ``kit release history``
``run``         ``kit run`` (the notebooks, headless)
``demo``        ``kit demo`` (the whole path)
==============  ==============================================================

No module outside ``kit/cli`` imports argparse. Heavy libraries load inside the command that
runs, so ``kit --help`` is fast. A :class:`~kit.errors.KitError` becomes one clear line on
stderr and exit code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kit.cli import data, demo, explain, gate, package, quantize, release, run, tune
from kit.errors import KitError

COMMANDS = (data, tune, explain, quantize, gate, package, release, run, demo)
"""The subcommand modules, in ``kit --help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    from kit import __version__

    parser = argparse.ArgumentParser(prog="kit", description="From a notebook experiment to a production service.")
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


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
