"""The release store: state changes, atomic read-modify-write across processes (SQLite and PostgreSQL),
migration of the JSON-lines promotion log, and the compatibility layer in kit.package."""

from __future__ import annotations

import json
import multiprocessing as mp
import uuid
from pathlib import Path
from typing import Any

import pytest
from _release import mixed_changes, rollback_once

from kit.errors import ConfigError, KitError
from kit.release import history, import_jsonl, read, store_url
from kit.release._state import Release, change, promote_change, rollback_change

SPAWN = mp.get_context("spawn")


def _name() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return store_url(tmp_path / "release.db")


def test_promote_canary_shadow_and_rollback(sqlite_url: str) -> None:
    name = _name()
    for v in "AB":
        change(name, promote_change(f"{name}:{v}", "ship"), sqlite_url)
    with pytest.raises(KitError, match="already the champion"):
        change(name, promote_change(f"{name}:B", "again", canary=10), sqlite_url)
    entry = change(name, promote_change(f"{name}:C", "try", canary=10), sqlite_url)
    assert entry["event"] == "canary" and entry["percent"] == 10 and entry["champion"] == f"{name}:B"
    s = read(name, sqlite_url)
    assert (s.champion, s.challenger, s.mode, s.percent, s.revision) == (f"{name}:B", f"{name}:C", "canary", 10, 3)
    # shadow replaces the canary; promoting the challenger ends its trial and makes it the champion
    change(name, promote_change(f"{name}:C", "mirror", shadow=True), sqlite_url)
    assert read(name, sqlite_url).mode == "shadow"
    done = change(name, promote_change(f"{name}:C", "it is better"), sqlite_url)
    assert done["ended"] == f"{name}:C" and done["previous"] == f"{name}:B"
    s = read(name, sqlite_url)
    assert s.champions == (f"{name}:A", f"{name}:B", f"{name}:C") and s.challenger is None and s.mode is None
    # a rollback during a trial ends the trial (the champion stays) and retires the challenger
    change(name, promote_change(f"{name}:D", "try", canary=50), sqlite_url)
    back = change(name, rollback_change("errors"), sqlite_url)
    assert (back["what"], back["tag"], back["from"]) == ("challenger", f"{name}:C", f"{name}:D")
    s = read(name, sqlite_url)
    assert s.champion == f"{name}:C" and s.challenger is None and s.retired == (f"{name}:D",)
    # without a trial it pops the champion stack
    back = change(name, rollback_change("bad"), sqlite_url)
    assert (back["what"], back["tag"], back["from"]) == ("champion", f"{name}:B", f"{name}:C")
    assert [e["revision"] for e in history(name, sqlite_url)] == list(range(1, 9))


@pytest.mark.parametrize("bad", [0, -5, 101, "ten"])
def test_canary_share_is_checked(sqlite_url: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match="canary") as info:
        promote_change("x:1", "r", canary=bad)
    assert info.value.field == "canary"
    with pytest.raises(ConfigError, match="not both"):
        promote_change("x:1", "r", canary=5, shadow=True)


def test_a_trial_needs_a_champion(sqlite_url: str) -> None:
    with pytest.raises(KitError, match="no champion yet"):
        change(_name(), promote_change("x:1", "r", shadow=True), sqlite_url)
    with pytest.raises(KitError, match="nothing to roll back"):
        change(_name(), rollback_change("r"), sqlite_url)


def _race(url: str, workers: int, target: Any, args: Any) -> list[Any]:
    barrier, out = SPAWN.Barrier(workers), SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*args(i), barrier, out)) for i in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return results


def _replay_matches_log(name: str, url: str) -> Release:
    """Replaying the log entry by entry reproduces every entry and ends in the stored state."""
    state = Release(name=name)
    for entry in history(name, url):
        if entry["event"] == "rollback":
            fn = rollback_change(entry["reason"])
        else:
            fn = promote_change(entry["tag"], entry["reason"], canary=entry.get("percent"),
                                shadow=entry["event"] == "shadow")
        new, expected = fn(state)
        for key in ("event", "tag", "from", "previous"):
            assert entry.get(key) == expected.get(key), (entry, expected)
        state = Release(name=name, champions=new.champions, challenger=new.challenger, mode=new.mode,
                        percent=new.percent, retired=new.retired, revision=entry["revision"])
    stored = read(name, url)
    assert (state.champions, state.challenger, state.mode, state.revision) == (
        stored.champions, stored.challenger, stored.mode, stored.revision)
    return stored


def _concurrent_rollbacks(url: str) -> None:
    name = _name()
    for v in "ABCDE":
        change(name, promote_change(f"{name}:{v}", "ship"), url)
    results = _race(url, 4, rollback_once, lambda i: (url, name))
    # four rollbacks on [A..E]: each popped one version, none logged the same step twice
    assert sorted(r[1:] for r in results) == sorted(
        [(f"{name}:{a}", f"{name}:{b}") for a, b in ("AB", "BC", "CD", "DE")]), results
    assert read(name, url).champions == (f"{name}:A",)
    _replay_matches_log(name, url)


def _concurrent_mixed(url: str) -> None:
    name = _name()
    change(name, promote_change(f"{name}:base", "ship"), url)
    done = _race(url, 4, mixed_changes, lambda i: (url, name, i))
    stored = _replay_matches_log(name, url)
    assert stored.revision == 1 + sum(done)


def test_concurrent_rollbacks_from_processes_on_sqlite(sqlite_url: str) -> None:
    _concurrent_rollbacks(sqlite_url)


def test_concurrent_promotions_and_rollbacks_on_sqlite(sqlite_url: str) -> None:
    _concurrent_mixed(sqlite_url)


@pytest.mark.postgres
def test_concurrent_rollbacks_from_processes_on_postgres(postgres_url: str) -> None:
    _concurrent_rollbacks(postgres_url)


@pytest.mark.postgres
def test_concurrent_promotions_and_rollbacks_on_postgres(postgres_url: str) -> None:
    _concurrent_mixed(postgres_url)


def test_the_jsonl_log_is_imported_once_and_left_in_place(tmp_path: Path) -> None:
    legacy = tmp_path / "kit_promotions.jsonl"
    entries = [{"event": "promote", "name": "bc", "tag": f"bc:{v}", "reason": "r", "at": "2024-01-01"} for v in "ABC"]
    entries += [{"event": "rollback", "name": "bc", "tag": "bc:B", "from": "bc:C", "reason": "bad"},
                {"event": "promote", "name": "other", "tag": "other:1", "reason": "r"}]
    legacy.write_text("".join(json.dumps(e) + "\n" for e in entries))
    before = legacy.read_bytes()
    url = store_url(tmp_path / "release.db")
    assert import_jsonl(legacy, url) == 5
    assert import_jsonl(legacy, url) == 0  # once per store and file
    assert read("bc", url).champions == ("bc:A", "bc:B") and read("other", url).champion == "other:1"
    log = history("bc", url)
    assert [e["revision"] for e in log] == [1, 2, 3, 4] and log[-1]["from"] == "bc:C"
    assert all(e["imported_from"] == str(legacy) for e in log)
    assert legacy.read_bytes() == before
    # the imported state goes on changing atomically
    change("bc", rollback_change("again"), url)
    assert read("bc", url).champions == ("bc:A",)


def test_a_broken_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    legacy = tmp_path / "kit_promotions.jsonl"
    legacy.write_text('{"event": "promote", "name": "bc", "tag": "bc:A"}\nnot json\n')
    with pytest.raises(KitError, match="line 2") as info:
        import_jsonl(legacy, store_url(tmp_path / "r.db"))
    assert info.value.file == str(legacy) and info.value.row == 1


def test_the_default_store_imports_the_legacy_log_beside_the_model_store(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from kit import package

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    monkeypatch.delenv("KIT_LOG_URL", raising=False)
    (tmp_path / "kit_promotions.jsonl").write_text(
        "".join(json.dumps({"event": "promote", "name": "bc", "tag": f"bc:{v}"}) + "\n" for v in "AB"))
    assert package.promoted("bc") == ["bc:A", "bc:B"]
    assert package.promotions_path() == tmp_path / "kit_promotions.jsonl"
    assert (tmp_path / "kit_release.db").is_file()
    assert package.rollback("bc", "r")["tag"] == "bc:A"


def test_store_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_LOG_URL", "postgresql://u:secret@db/x")
    assert store_url() == "postgresql://u:secret@db/x"
    assert store_url("rel.db") == f"sqlite:///{Path('rel.db').resolve()}"
    monkeypatch.setenv("KIT_LOG_URL", "postgresql://u:secret@nowhere/x.txt")
    with pytest.raises(ConfigError) as info:
        store_url("http-ish")
    assert info.value.field == "KIT_LOG_URL"
    monkeypatch.setenv("KIT_LOG_URL", "s3cret-path.txt")
    with pytest.raises(ConfigError):
        store_url()


def test_an_unreachable_database_fails_fast_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.release._db import engine

    with pytest.raises(ConfigError) as info:
        engine("postgresql://kit:hunter2@127.0.0.1:9/kit")
    assert "hunter2" not in info.value.message and "***" in info.value.message
