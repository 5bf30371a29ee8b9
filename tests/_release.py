"""Helpers for the release tests: worker processes that change a release state concurrently."""

from __future__ import annotations

from typing import Any


def rollback_once(url: str, name: str, barrier: Any, out: Any) -> None:
    """Wait for every worker, then roll ``name`` back once; put ("ok", tag, from) or ("error", message)."""
    from kit.errors import KitError
    from kit.release._state import change, rollback_change

    barrier.wait()
    try:
        entry = change(name, rollback_change("race"), url)
        out.put(("ok", entry["tag"], entry["from"]))
    except KitError as exc:
        out.put(("error", exc.message))


def mixed_changes(url: str, name: str, worker: int, barrier: Any, out: Any) -> None:
    """Promote, canary, rollback and promote again, racing the other workers."""
    from kit.errors import KitError
    from kit.release._state import change, promote_change, rollback_change

    barrier.wait()
    done = 0
    for step in range(6):
        tag = f"{name}:w{worker}s{step}"
        make = (promote_change(tag, "race") if step % 3 == 0 else
                promote_change(tag, "race", canary=5.0 * (step + 1)) if step % 3 == 1 else rollback_change("race"))
        try:
            change(name, make, url)
            done += 1
        except KitError:
            pass  # e.g. nothing to roll back at that moment: a clear refusal, never a corrupt state
    out.put(done)
