"""kit's serving pieces without a server: the batcher, the JSON codec, the settings and the row checker."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from kit.errors import ConfigError, SchemaError
from kit.serving import BadRequestError, Batcher, RowChecker, ServedModel, Settings, _codec, check_rows, cpu_count


class Recorder:
    """A run function that answers each request with its rows doubled and records every call."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[list[int]]] = []
        self.fail_on = fail_on

    def __call__(self, requests: list[list[Any]]) -> list[Any]:
        self.calls.append(requests)
        if any(self.fail_on in rows for rows in requests):
            raise SchemaError("bad row", field="x", row=0)
        return [[2 * v for v in rows] for rows in requests]


async def _submit_all(batcher: Batcher, requests: list[list[int]]) -> list[Any]:
    return await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)


def test_concurrent_requests_are_merged_and_each_gets_its_own_answer():
    run = Recorder()
    batcher = Batcher(run, threading.Lock(), max_batch_size=512)
    requests = [[i, i + 1] for i in range(40)]
    answers = asyncio.run(_submit_all(batcher, requests))
    assert answers == [[2 * i, 2 * i + 2] for i in range(40)]
    # submitted on one turn of the loop, they share one model call (no timer involved)
    assert len(run.calls) == 1 and batcher.requests == 40


def test_batches_stop_at_max_batch_size_and_batching_can_be_off():
    run = Recorder()
    asyncio.run(_submit_all(Batcher(run, threading.Lock(), max_batch_size=10), [[i] * 4 for i in range(10)]))
    assert [sum(len(r) for r in call) for call in run.calls] == [8, 8, 8, 8, 8]
    run = Recorder()
    asyncio.run(_submit_all(Batcher(run, threading.Lock(), enabled=False), [[i] for i in range(5)]))
    assert len(run.calls) == 5


def test_a_failing_request_fails_alone():
    run = Recorder(fail_on=13)
    answers = asyncio.run(_submit_all(Batcher(run, threading.Lock()), [[1], [13], [2]]))
    assert answers[0] == [2] and answers[2] == [4]
    assert isinstance(answers[1], SchemaError)
    # the merged call failed, then each request ran on its own
    assert [len(c) for c in run.calls] == [3, 1, 1, 1]


def test_a_busy_model_is_waited_for_in_a_thread_not_on_the_event_loop():
    lock = threading.Lock()
    run = Recorder()
    batcher = Batcher(run, lock)

    async def main() -> tuple[list[Any], float]:
        lock.acquire()  # e.g. a CSV upload being scored by BentoML's thread
        threading.Timer(0.3, lock.release).start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not lock.acquire(blocking=False):
                ticks += 1
                await asyncio.sleep(0.01)
            lock.release()

        answers, _ = await asyncio.gather(_submit_all(batcher, [[1], [2]]), ticker())
        return answers, ticks

    answers, ticks = asyncio.run(main())
    assert answers == [[2], [4]]
    assert ticks >= 10  # the loop kept running while the batch waited for the model


def test_wait_ms_holds_a_lone_request_for_company():
    run = Recorder()
    batcher = Batcher(run, threading.Lock(), wait_ms=50)

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.submit([2]))
        assert await first == [2] and await second == [4]

    start = time.perf_counter()
    asyncio.run(main())
    assert len(run.calls) == 1 and time.perf_counter() - start >= 0.05


def test_served_model_answers_each_request_as_infer_would(bc_result):
    from kit.quantize import attach

    bundle = attach(bc_result.bundle, "ort-int8-dynamic")  # batch-dependent: the hardest case
    model = ServedModel(bundle, "bc:test")
    rows = bc_result.splits.test.X.to_dict("records")
    requests = [rows[:1], rows[1:9], rows[9:10], rows[10:40]]
    with model.lock:
        answers = model.predict_requests(requests)
    for request, answer in zip(requests, answers, strict=True):
        expected = bundle.infer(request).records()
        assert answer == expected
    assert model.seen == 40 and model.drift()["window"] == 40
    assert model.metadata()["serving"]["batch_invariant"] is False


def test_codec_reads_python_nan_literals_and_refuses_garbage():
    assert np.isnan(_codec.loads(b'{"a": NaN}')["a"])  # what json.dumps writes for a missing value
    assert _codec.loads(b'{"a": 1e999}')["a"] == float("inf")
    for body in (b"\xff\xfe", b"[" * 50_000 + b"]" * 50_000, b'{"rows": [1,'):
        with pytest.raises(BadRequestError) as info:
            _codec.loads(body)
        assert info.value.field == "body"
    assert _codec.loads(_codec.dumps({"p": np.float32(0.25), "n": np.int64(3), "x": float("nan")})) == \
        {"p": 0.25, "n": 3, "x": None}


def test_nan_gets_a_message_that_says_to_send_null(mixed_result):
    row = {**mixed_result.bundle.example(1)[0], "size": float("nan")}
    with pytest.raises(SchemaError, match="send null for a missing value") as info:
        check_rows(mixed_result.bundle, {"rows": [row]}, 10)
    assert (info.value.field, info.value.row) == ("size", 0)


def test_row_checker_prepared_once_agrees_with_check_rows(mixed_result):
    bundle = mixed_result.bundle
    checker = RowChecker(bundle)
    good = bundle.example(3)
    assert checker({"rows": good}, 10) == check_rows(bundle, {"rows": good}, 10) == good
    bad = [good[0], {**good[1], "color": "purple"}]
    with pytest.raises(SchemaError, match="unseen category 'purple'") as info:
        checker({"rows": bad}, 10)
    assert (info.value.field, info.value.row) == ("color", 1)


def test_an_offloading_batcher_runs_every_call_off_the_event_loop():
    threads: list[int] = []

    def run(requests: list[list[Any]]) -> list[Any]:
        threads.append(threading.get_ident())
        time.sleep(0.01)
        return [list(rows) for rows in requests]

    async def main() -> tuple[list[Any], int]:
        batcher = Batcher(run, threading.Lock(), offload=True)
        return await _submit_all(batcher, [[i] for i in range(20)]), threading.get_ident()

    answers, loop_thread = asyncio.run(main())
    assert answers == [[i] for i in range(20)]
    # an image model's calls never run on the loop's thread; requests still merge while one runs
    assert threads and loop_thread not in threads and len(threads) < 20


def test_settings_defaults_and_validation(monkeypatch):
    for name in ("KIT_WORKERS", "KIT_FAST_PATH", "KIT_BATCH_WAIT_MS", "KIT_DRIFT_WINDOW", "KIT_DECODE_THREADS"):
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert s.workers == cpu_count() >= 1  # one worker per CPU the process may use
    assert s.fast_path and s.batch_wait_ms == 0 and s.drift_window == 2000 and s.decode_threads == 4
    monkeypatch.setenv("KIT_DRIFT_WINDOW", "0")  # the drift window can be turned off
    monkeypatch.setenv("KIT_FAST_PATH", "off")
    monkeypatch.setenv("KIT_BATCH_WAIT_MS", "1.5")
    monkeypatch.setenv("KIT_DECODE_THREADS", "2")
    s = Settings.from_env()
    assert s.drift_window == 0 and not s.fast_path and s.batch_wait_ms == 1.5 and s.decode_threads == 2
    for name, value in (("KIT_FAST_PATH", "maybe"), ("KIT_BATCH_WAIT_MS", "-1"), ("KIT_BATCH_WAIT_MS", "soon"),
                        ("KIT_WORKERS", "0"), ("KIT_DECODE_THREADS", "0")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as info:
            Settings.from_env()
        assert info.value.field == name
        monkeypatch.delenv(name)
