"""Start test subprocesses with default signal handling, whatever the test run inherited.

A process started with SIGINT ignored (``trap '' INT``, ``nohup``, a non-interactive shell's
background job: how CI often launches a run) passes SIG_IGN on to every child across exec, and
Python then never installs its KeyboardInterrupt handler: a child that a test interrupts with
SIGINT would not notice. ``Popen(restore_signals=True)`` resets only SIGPIPE, SIGXFZ and SIGXFSZ,
and ``preexec_fn`` may deadlock in a process with threads (torch's), so a tiny Python launcher
resets SIGINT (and unblocks it) and then execs the real command, keeping the same pid.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

_LAUNCHER = ("import os, signal, sys; "
             "signal.signal(signal.SIGINT, signal.SIG_DFL); "
             "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
             "os.execvp(sys.argv[1], sys.argv[1:])")


def with_default_sigint(cmd: Sequence[str]) -> list[str]:
    """``cmd`` wrapped so that it starts with SIGINT at its default disposition (Ctrl-C works)."""
    return [sys.executable, "-c", _LAUNCHER, *cmd]
