"""Routing decisions: the sticky canary split and shadow scoring that never touches the caller."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kit.release import ShadowRunner, bucket, to_challenger


@pytest.mark.parametrize("percent", [5.0, 10.0, 25.0, 50.0])
def test_keyed_split_is_within_three_points_of_the_share(percent: float) -> None:
    keys = [f"user-{i}" for i in range(2000)]
    share = 100.0 * sum(to_challenger("bc", percent, k) for k in keys) / len(keys)
    assert abs(share - percent) <= 3.0


def test_the_split_is_sticky_and_a_ramp_keeps_earlier_keys() -> None:
    keys = [f"k{i}" for i in range(2000)]
    first = {k: to_challenger("bc", 10, k) for k in keys}
    assert all(to_challenger("bc", 10, k) == v for k, v in first.items())  # 100% sticky
    wider = {k: to_challenger("bc", 20, k) for k in keys}
    assert all(wider[k] for k, v in first.items() if v)  # 10 -> 20 %: the first 10 % stay on the challenger
    # the bucket depends on the model name too: another model splits its users independently
    assert [bucket("bc", k) for k in keys[:50]] != [bucket("other", k) for k in keys[:50]]
    assert min(bucket("bc", k) for k in keys) >= 0 and max(bucket("bc", k) for k in keys) < 100


def test_a_split_without_a_key_is_random_at_the_share() -> None:
    share = sum(to_challenger("bc", 30, None) for _ in range(20000)) / 200.0
    assert abs(share - 30) < 2
    assert not to_challenger("bc", 0, "k") and to_challenger("bc", 100, "k")


def test_shadow_outcomes_are_counted_and_never_reach_the_caller() -> None:
    runner = ShadowRunner(timeout_s=0.2, queue_size=4, threads=1)
    got: list[Any] = []
    failed: list[str] = []

    def boom() -> Any:
        raise RuntimeError("challenger broke")

    assert runner.submit(lambda: 41 + 1, lambda out, s: got.append(out), lambda why, s: failed.append(why))
    assert runner.submit(boom, lambda out, s: got.append(out), lambda why, s: failed.append(why))
    assert runner.submit(lambda: time.sleep(0.4), lambda out, s: got.append(out), lambda why, s: failed.append(why))
    assert runner.idle(5)
    assert got == [42] and failed[0].startswith("error: RuntimeError: challenger broke") and failed[1] == "timeout"
    assert runner.counts == {"scored": 1, "error": 1, "timeout": 1, "dropped": 0}


def test_a_hanging_challenger_holds_its_threads_then_jobs_are_dropped_without_blocking() -> None:
    release = threading.Event()
    runner = ShadowRunner(timeout_s=0.1, queue_size=2, threads=2)
    for _ in range(2):
        runner.submit(release.wait, lambda out, s: None)
    time.sleep(0.3)
    assert runner.hung() == 2
    slowest = 0.0
    for _ in range(50):
        t0 = time.perf_counter()
        runner.submit(release.wait, lambda out, s: None)
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 0.01 and runner.counts["dropped"] == 48  # two wait in the queue, the rest are dropped
    time.sleep(0.2)  # the two queued jobs wait longer than the timeout
    release.set()
    assert runner.idle(5)
    # the two that waited in the queue are stale by now: dropped too; the two held calls ended as timeouts
    assert runner.counts["dropped"] == 50 and runner.counts["timeout"] == 2


@pytest.mark.parametrize(("env", "field"), [
    ({"KIT_CHALLENGER_TAG": "bc:2"}, "KIT_CHALLENGER_TAG"),
    ({"KIT_CANARY_PERCENT": "10"}, "KIT_CHALLENGER_TAG"),
    ({"KIT_CHALLENGER_TAG": "bc:2", "KIT_CANARY_PERCENT": "150"}, "KIT_CANARY_PERCENT"),
    ({"KIT_CHALLENGER_TAG": "bc:2", "KIT_CANARY_PERCENT": "10", "KIT_SHADOW": "1"}, "KIT_SHADOW"),
    ({"KIT_SHADOW": "maybe"}, "KIT_SHADOW"),
    ({"KIT_LOG_QUEUE": "0"}, "KIT_LOG_QUEUE"),
])
def test_release_settings_name_the_bad_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                field: str) -> None:
    from kit.errors import ConfigError
    from kit.release._settings import ReleaseSettings

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        ReleaseSettings.from_env()
    assert info.value.field == field


def test_release_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.release._settings import ReleaseSettings

    monkeypatch.setenv("KIT_CHALLENGER_TAG", "bc:2")
    monkeypatch.setenv("KIT_SHADOW", "1")
    monkeypatch.setenv("KIT_SHADOW_TIMEOUT_MS", "250")
    monkeypatch.setenv("KIT_ROLLBACK_MAX_ERROR_RATE", "0.1")
    s = ReleaseSettings.from_env()
    assert (s.challenger, s.shadow, s.canary_percent, s.shadow_timeout_s) == ("bc:2", True, None, 0.25)
    assert s.thresholds.max_error_rate == 0.1 and s.poll_s == 2.0 and s.log


def test_what_a_worker_serves_for_a_state_and_the_environment(tmp_path: Any) -> None:
    from kit.release import Release, store_url
    from kit.release._runtime import ReleaseRuntime, Target
    from kit.release._settings import ReleaseSettings

    def runtime(pinned: bool = False, **env: Any) -> ReleaseRuntime:
        settings = ReleaseSettings(log=False, store=store_url(tmp_path / "r.db"), **env)
        return ReleaseRuntime(Target("bc:1", None), settings, lambda tag, role: Target(tag, None), pinned=pinned,
                              start=False)

    state = Release("bc", champions=("bc:0", "bc:1", "bc:3"), challenger="bc:2", mode="canary", percent=10,
                    retired=("bc:9",), revision=7)
    assert runtime().desired(state) == ("bc:3", "bc:2", "canary", 10)
    assert runtime(pinned=True).desired(state) == ("bc:1", "bc:2", "canary", 10)  # the champion stays pinned
    assert runtime(challenger="bc:8", shadow=True).desired(state) == ("bc:3", "bc:8", "shadow", 0.0)
    assert runtime(challenger="bc:8", canary_percent=30).desired(state) == ("bc:3", "bc:8", "canary", 30)
    assert runtime(challenger="bc:9", canary_percent=30).desired(state) == ("bc:3", None, None, 0.0)  # retired
    # the runtime swaps its view whole: a fresh store has no state, so it keeps serving its champion
    r = runtime()
    assert r.refresh().champion.tag == "bc:1" and r.choose("k")[2] == "champion"


def test_metrics_are_summed_off_the_request_path_and_match_observing_one_by_one() -> None:
    import prometheus_client as pc

    from kit.release._prom import LATENCY_BUCKETS, _observe_many

    registry = pc.CollectorRegistry()
    one = pc.Histogram("one", "one", buckets=LATENCY_BUCKETS, registry=registry)
    many = pc.Histogram("many", "many", buckets=LATENCY_BUCKETS, registry=registry)
    values = [0.0004, 0.0005, 0.001, 0.003, 0.3, 10.0, 20.0] * 50
    for v in values:
        one.observe(v)
    _observe_many(many, values)
    samples = {m.name: [(s.name.rsplit("_", 1)[-1], s.labels.get("le"), s.value) for s in m.samples
                        if not s.name.endswith("_created")] for m in registry.collect()}
    for (kind, le, a), (_, _, b) in zip(samples["one"], samples["many"], strict=True):
        assert a == pytest.approx(b), (kind, le)
