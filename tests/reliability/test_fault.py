"""Fault: SIGKILL the server's whole process group in the middle of a load, then start it again.

BentoML's process manager starts the service worker in a session of its own, so killing only the
group of ``bentoml serve`` would leave that worker orphaned and still answering on the inherited
socket. The kill therefore also hits every descendant recorded beforehand, as a container or cgroup
kill would.

The restarted server resolves the model the same way (latest promoted version), so it must serve
the same tag, answer every request with the in-process prediction, and the model store entry must
still load with every sha256 verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import httpx
import psutil
import pytest
from _server import serving
from bentoml import models

from kit import package
from reliability.conftest import API_KEY
from reliability.test_load import hammer, records

pytestmark = [pytest.mark.server, pytest.mark.slow]

KILL_AFTER = 300
BEFORE = 1000
AFTER = 500


def _running(pid: int, wait: float = 10.0) -> bool:
    """Whether ``pid`` still runs after up to ``wait`` seconds (zombies and reaped processes count as gone)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.1)
    return True


def test_sigkill_mid_load_then_restart_serves_the_same_version(rel_home: dict[str, Any], mixed_result, auth,
                                                               ledger) -> None:
    home, tag, bundle = rel_home["home"], rel_home["tag"], rel_home["bundle"]
    test_x = mixed_result.splits.test.X
    rows, expected = records(test_x), bundle.infer(test_x).labels
    env = {"KIT_API_KEY": API_KEY}
    with serving(None, home, env=env) as victim:  # None: the latest promoted version
        assert httpx.get(f"{victim.url}/metadata", headers=auth, timeout=30).json()["tag"] == tag
        group = [victim.proc.pid, *(c.pid for c in psutil.Process(victim.proc.pid).children(recursive=True))]
        killed = []

        def kill(done: int) -> None:
            if done == KILL_AFTER:
                os.killpg(victim.proc.pid, signal.SIGKILL)
                for pid in group[1:]:  # the worker, in its own session
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                killed.append(done)

        first = asyncio.run(hammer(victim.url, auth, rows, expected, None, n=BEFORE, on_done=kill))
        victim.proc.wait(timeout=30)
    assert killed == [KILL_AFTER]
    # requests before the kill were all answered; the rest failed (the server was gone, not wrong)
    answered = BEFORE - len(first["errors"])
    assert answered >= KILL_AFTER - 32 and all("predicted" not in e for e in first["errors"])
    # nothing of the killed group survives (no orphaned worker holding the port or the model)
    assert not [p for p in group if _running(p)], "a server process survived SIGKILL"

    # the store is intact: the same entry, labels and promotion, and it loads hash-verified
    assert str(models.get(tag).tag) == tag and models.get(tag).info.labels["gate"] == "passed"
    assert package.resolve(None) == tag
    assert package.load(tag).infer(test_x).labels == expected

    with serving(None, home, env=env) as restarted:
        meta = httpx.get(f"{restarted.url}/metadata", headers=auth, timeout=30).json()
        second = asyncio.run(hammer(restarted.url, auth, rows, expected, None, n=AFTER))
    assert meta["tag"] == tag and meta["lineage"]["data_hash"] == bundle.lineage["data_hash"]
    ledger.record("fault", tried=BEFORE + AFTER, failures=len(second["errors"]), killed_after=KILL_AFTER,
                  processes_killed=len(group),
                  failed_while_down=len(first["errors"]), answered_after_restart=AFTER - len(second["errors"]))
    assert not second["errors"], "\n".join(second["errors"][:10])
