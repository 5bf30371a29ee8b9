"""Tuning: spaces, pruning, storages (SQLite, journal, PostgreSQL), workers, resume, redaction."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from _signals import with_default_sigint

import kit
from kit._urls import redact
from kit.bundle import ModelBundle
from kit.cli import main as cli_main
from kit.errors import ConfigError
from kit.tune import DEFAULT_SPACE, Space, create_study, run_worker, tune
from kit.tune._storage import CONNECT_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[1]
KIT = str(ROOT / ".venv" / "bin" / "kit")
# Tiny trials: one narrow hidden layer, a few full-batch-ish epochs.
TINY = {"depth": 1, "width": "int(4, 16)", "lr": "float(1e-4, 3e-2, log)", "dropout": 0.0, "batch_size": 256}
FAST = kit.TrainConfig(epochs=8, patience=0)
# Slower trials (a few seconds) so a process can be stopped in the middle of one.
SLOW_SPACE = {"depth": 2, "width": "int(32, 64)", "lr": "float(1e-3, 1e-2, log)", "batch_size": 64}
SLOW = kit.TrainConfig(epochs=60, patience=0)
COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def _password(url: str) -> str:
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    assert password, "the test database URL must carry a password"
    return str(password)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=COUNTED)


# --- search spaces -------------------------------------------------------------------------------

def test_default_space_covers_the_mlp_and_round_trips() -> None:
    space = Space()
    assert set(space.params) == {"depth", "width", "dropout", "lr", "weight_decay", "batch_size", "label_smoothing"}
    assert space.params["lr"].log and space.params["weight_decay"].log
    # The stored form rebuilds the same space (workers rebuild it from the study).
    assert Space(space.to_dict()).to_dict() == space.to_dict() == Space(DEFAULT_SPACE).to_dict()
    config = space.to_config({"depth": 3, "width": 32, "lr": 0.01})
    assert config.hidden == (32, 32, 32) and config.lr == 0.01


@pytest.mark.parametrize(("spec", "name"), [
    ({"lr": "float(0.1, 0.01)"}, "lr"),                 # low >= high
    ({"lr": "float(0, 0.1, log)"}, "lr"),               # log scale needs low > 0
    ({"lr": "gauss(0, 1)"}, "lr"),                      # unknown distribution
    ({"width": "int(1.5, 8)"}, "width"),                # int with a fractional bound
    ({"dropout": "float(0.0, 1.5)"}, "dropout"),        # outside TrainConfig's [0, 1)
    ({"activation": "choice(relu, swish)"}, "activation"),  # a choice TrainConfig refuses
    ({"batch_size": "choice(32, big)"}, "batch_size"),  # wrong type in a choice
    ({"seed": "int(0, 9)"}, "seed"),                    # not tunable
    ({"hidden_units": "int(1, 9)"}, "hidden_units"),    # unknown name
    ({"depth": []}, "depth"),                           # empty choice list
])
def test_bad_space_names_the_parameter(spec: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError) as err:
        Space(spec)
    assert err.value.field == name and repr(name) in err.value.message


def test_bad_space_fails_before_touching_storage_or_data() -> None:
    # The storage is unreachable: a space error must win, so nothing was contacted first.
    with pytest.raises(ConfigError) as err:
        tune("breast_cancer", space={"lr": "float(1, 0)"}, storage="postgresql://u:pw@127.0.0.1:1/x")
    assert err.value.field == "lr"


@pytest.mark.parametrize("n_trials", [0, -3])
def test_n_trials_must_be_positive(n_trials: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as err:
        tune("breast_cancer", n_trials=n_trials, run_dir=tmp_path)
    assert err.value.field == "n_trials" and f"n_trials={n_trials}" in err.value.message
    # The CLI turns it into one line and exit code 2.
    assert cli_main(["tune", "--n-trials", str(n_trials), "--run-dir", str(tmp_path)]) == 2
    assert "n_trials" in capsys.readouterr().err


def test_redact_hides_passwords_in_every_form() -> None:
    assert redact("postgresql+psycopg2://kit:s3cr%40t@db:5432/x") == "postgresql+psycopg2://kit:***@db:5432/x"
    assert redact("mysql://u:p@h/db?password=zz&x=1") == "mysql://u:***@h/db?password=***&x=1"
    assert redact("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def test_a_url_without_its_driver_names_the_package_to_install() -> None:
    """#18 item 11: not SQLAlchemy's "Failed to import DB access module"; psycopg 3 serves a plain URL too."""
    code = ("import sys; sys.modules['psycopg2'] = None; sys.modules['psycopg'] = None\n"
            "from kit._urls import resolve\n"
            "try:\n    resolve('postgresql://kit:pw@127.0.0.1/kit')\nexcept Exception as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "needs a postgresql driver" in out and "pip install 'psycopg2-binary' or 'psycopg[binary]'" in out
    assert "pw" not in out.replace("kit:***", "")
    code = ("import sys; sys.modules['psycopg2'] = None\n"
            "from kit._urls import resolve\nprint(resolve('postgresql://kit:pw@127.0.0.1/kit'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "postgresql+psycopg://kit:pw@127.0.0.1/kit"  # psycopg 3 when psycopg2 is absent


@pytest.mark.postgres
def test_psycopg3_url_runs_a_study_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    url = "postgresql+psycopg://" + postgres_url.split("://", 1)[1]
    result = tune("breast_cancer", space=TINY, n_trials=2, train=FAST.replace(epochs=3), storage=url,
                  study_name=_name(), pruner="none", retrain=False)
    assert result.counts() == {"COMPLETE": 2} and result.storage.startswith("postgresql+psycopg://")


def test_unreachable_storage_fails_fast_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg2://kit:hunter2-secret@127.0.0.1:1/kit"
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        create_study("breast_cancer", storage=url, study_name="x")
    # Bounded: the connect timeout, not a hang (generous margin for a loaded machine).
    assert time.monotonic() - start < CONNECT_TIMEOUT_S + 30
    assert err.value.field == "storage" and "hunter2" not in str(err.value) and "kit:***@" in str(err.value)
    assert cli_main(["tune-worker", "--storage", url, "--study", "x"]) == 2
    out = capsys.readouterr()
    assert "cannot open the Optuna storage" in out.err and "hunter2" not in out.err + out.out


# --- SQLite: pruning, retrain, lineage, resume, plots ---------------------------------------------

def test_sqlite_study_prunes_retrains_and_resumes(tmp_path: Path) -> None:
    result = tune("breast_cancer", space=TINY, n_trials=8, train=FAST, run_dir=tmp_path, study_name="bc", threads=1)
    counts = result.counts()
    # The default storage is a SQLite file under the run directory.
    assert (tmp_path / "optuna.db").exists() and result.storage.startswith("sqlite:///")
    # Pruned trials are PRUNED (not FAIL) and carry their per-epoch reports.
    assert counts.get("PRUNED", 0) >= 1 and "FAIL" not in counts
    assert counts["COMPLETE"] + counts["PRUNED"] == 8
    pruned = [t for t in result.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.intermediate_values for t in pruned)
    # Each epoch reports the best log loss so far: what the trial returns if it stops there.
    for t in result.study.trials:
        curve = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        assert curve == sorted(curve, reverse=True)
        if t.value is not None:
            assert t.value == pytest.approx(curve[-1])
    # The SQLite file is in write-ahead-log mode (cheap per-epoch commits, readers never block).
    with sqlite3.connect(tmp_path / "optuna.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert result.metric == "log_loss" and result.direction == "minimize"
    assert result.best_value == min(t.value for t in result.study.trials if t.value is not None)

    bundle = result.bundle
    assert bundle is not None and bundle.configs["train"]["hidden"] == list(result.best_config.hidden)
    assert bundle.lineage["study_name"] == "bc" and bundle.lineage["trial_number"] == result.best_trial
    assert bundle.lineage["best_params"] == result.best_params
    assert bundle.sections["tuning"]["n_trials"] == counts and bundle.sections["tuning"]["best_value"] == \
        result.best_value
    loaded = ModelBundle.load(bundle.save(tmp_path / "bundle"))
    assert loaded.sections["tuning"]["study_name"] == "bc"

    first = [t.params for t in result.study.trials]
    # Same name again with a higher target: resumes and only adds the missing trials.
    again = tune("breast_cancer", space=TINY, n_trials=10, train=FAST, run_dir=tmp_path, study_name="bc",
                 retrain=False, threads=1)
    assert len(_finished(again.study)) == 10
    assert [t.params for t in again.study.trials[:8]] == first

    figs = again.plots()
    assert set(figs) == {"history", "importances", "parallel", "intermediate"}
    assert all(len(fig.data) > 0 for fig in figs.values())
    html = again.save_plots(tmp_path / "report.html").read_text()
    assert html.count("plotly.js") >= 1 and "intermediate" in html


def test_median_pruner_decides_like_optuna_from_a_snapshot_of_complete_trials() -> None:
    from kit.tune._study import _pruner

    study = optuna.create_study(direction="minimize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for i in range(6):
        curve = {step: 1.0 - 0.1 * step + 0.05 * i for step in range(1, 11)}
        study.add_trial(optuna.trial.create_trial(params={"x": i / 10}, distributions=dist, value=min(curve.values()),
                                                  intermediate_values=curve))
    train = kit.TrainConfig(epochs=10, warmup_epochs=3).to_dict()
    ours, theirs = _pruner("median", train), optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    decisions = []
    for offset in (-0.3, 0.12, 0.4):  # clearly better, around the median, clearly worse
        trial = study.ask()
        for step in range(1, 11):
            trial.report(1.0 - 0.1 * step + offset, step)
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            decision = ours.prune(study, frozen)
            assert decision == theirs.prune(study, frozen), (offset, step)
            decisions.append(decision)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert any(decisions) and not all(decisions)
    assert not any(decisions[:2])  # nothing is judged before the learning-rate warm-up ends (epoch 3)

    # Trials that complete meanwhile reach the snapshot when the next trial asks (or after SNAPSHOT_REFRESH_S).
    def ask_at_step_4() -> optuna.trial.FrozenTrial:
        trial = study.ask()
        trial.report(1.5, 4)
        return next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)

    assert ours.prune(study, ask_at_step_4())  # worse than the median (0.725) of the six complete trials
    worse = {step: 5.0 for step in range(1, 11)}
    for _ in range(8):
        study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, value=5.0,
                                                  intermediate_values=worse))
    frozen = ask_at_step_4()
    assert not ours.prune(study, frozen) and not theirs.prune(study, frozen)  # the median is now 5.0


def _study_with_pruned_trials() -> optuna.Study:
    """Four completed trials of 10 epochs and two pruned at epoch 4, with log-loss-like values."""
    study = optuna.create_study(direction="minimize")
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
            "width": optuna.distributions.IntDistribution(8, 256)}
    for i, state in enumerate(["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]):
        steps = range(1, 11) if state == "COMPLETE" else range(1, 5)
        curve = {step: 0.7 / step**2 + 0.01 * i for step in steps}
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 10 ** -(1 + i % 3), "width": 16 * (i + 1)}, distributions=dist,
            value=min(curve.values()) if state == "COMPLETE" else None, intermediate_values=curve,
            state=optuna.trial.TrialState[state]))
    return study


def test_plot_trials_shows_completed_and_pruned_trials_apart() -> None:
    from kit.tune import plot_trials

    fig = plot_trials(_study_with_pruned_trials(), "log_loss")
    curves, values = fig.axes
    labels = [t.get_text() for t in curves.get_legend().get_texts()]
    assert labels == ["completed (4)", "pruned (2)"]
    # A curve per trial; each pruned curve ends in an x at the epoch it was pruned (4).
    pruned_marks = [line for line in curves.lines if line.get_marker() == "x"]
    assert len(curves.lines) == 6 + 2 and [m.get_xdata()[0] for m in pruned_marks] == [4, 4]
    # Right: a point per trial (pruned ones at their last reported value) and the best-so-far line.
    assert [len(c.get_offsets()) for c in values.collections] == [4, 2]
    assert [t.get_text() for t in values.get_legend().get_texts()][-1] == "best so far"
    assert "log_loss" in curves.get_ylabel() and curves.get_xlabel() == "epoch"
    assert curves.get_yscale() == "log"  # 0.7 down to 0.007: a log axis keeps the good trials apart


def test_importances_need_two_completed_trials() -> None:
    from kit.tune import importances

    study = _study_with_pruned_trials()
    found = importances(study)
    assert set(found) == {"lr", "width"} and sum(found.values()) == pytest.approx(1.0)
    assert list(found.values()) == sorted(found.values(), reverse=True)
    single = optuna.create_study()
    single.add_trial(study.trials[0])
    assert importances(single) == {}  # one completed trial tells nothing
    same = optuna.create_study()
    for trial in (study.trials[0], study.trials[0]):
        same.add_trial(trial)
    assert importances(same) == {}  # nor do two with the same value


def test_same_seed_one_worker_gives_the_same_trials(tmp_path: Path) -> None:
    runs = [tune("wine", space=TINY, n_trials=4, train=FAST, run_dir=tmp_path, study_name=f"s{i}", seed=7,
                 pruner="none", retrain=False, threads=1) for i in range(2)]
    params = [[t.params for t in r.study.trials] for r in runs]
    values = [[t.value for t in r.study.trials] for r in runs]
    assert params[0] == params[1] and values[0] == values[1]
    assert len({json.dumps(p, sort_keys=True) for p in params[0]}) == 4  # four distinct trials


def test_study_refuses_another_metric_or_direction(tmp_path: Path) -> None:
    storage = str(tmp_path / "s.db")
    create_study("breast_cancer", space=TINY, train=FAST, storage=storage, study_name="m")
    with pytest.raises(ConfigError) as err:
        create_study("breast_cancer", space=TINY, train=FAST, storage=storage, study_name="m", metric="accuracy")
    assert err.value.field == "metric" and "log_loss" in err.value.message
    # The same recipe loads (resume) without complaint.
    assert create_study("breast_cancer", space=TINY, train=FAST, storage=storage, study_name="m").study_name == "m"
    # A stock Optuna study with the opposite direction is refused too.
    optuna.create_study(storage=f"sqlite:///{storage}", study_name="stock", direction="maximize")
    with pytest.raises(ConfigError, match="maximize"):
        create_study("breast_cancer", space=TINY, train=FAST, storage=storage, study_name="stock")


def test_journal_storage_and_hyperband(tmp_path: Path) -> None:
    result = tune("diabetes", space=TINY, n_trials=3, train=FAST, storage=f"journal:{tmp_path / 'j.journal'}",
                  study_name="j", pruner="hyperband", retrain=False, threads=1)
    assert result.metric == "rmse" and len(_finished(result.study)) == 3
    assert (tmp_path / "j.journal").stat().st_size > 0


def test_sqlite_resume_after_interrupted_run(tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SLOW_SPACE))
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    cmd = [KIT, "tune", "--threads", "1", "--storage", storage, "--study", "r", "--n-trials", "4",
           "--space", str(space), "--epochs", str(SLOW.epochs), "--patience", "0", "--pruner", "none",
           "--run-dir", str(tmp_path)]
    # The child must react to SIGINT even when this run inherited it ignored (CI in the background).
    proc = subprocess.Popen(with_default_sigint(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = _wait_for(storage, "r", complete=1, proc=proc)
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the third trial
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    result = tune("breast_cancer", space=SLOW_SPACE, n_trials=4, train=SLOW, storage=storage, study_name="r",
                  pruner="none", retrain=False, threads=1)
    after = {t.number: t for t in result.study.trials}
    # Every trial finished before the interruption is still there, unchanged.
    assert all(after[t.number].value == t.value and after[t.number].params == t.params for t in before)
    assert len(_finished(result.study)) == 4


def _wait_for(storage: str, name: str, complete: int, proc: subprocess.Popen[str],
              limit: float = 150.0) -> list[optuna.trial.FrozenTrial]:
    """Poll until ``complete`` trials are COMPLETE and another one is running and has reported."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            trials = optuna.load_study(study_name=name, storage=storage).trials
        except KeyError:
            trials = []
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        # Well inside a trial: it has reported, with many epochs still to go.
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                   and 0 < len(t.intermediate_values) < SLOW.epochs - 20]
        if len(done) >= complete and running:
            return done
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"study {name} did not reach {complete} complete trials in time")


# --- PostgreSQL: two workers, SIGKILL, stock Optuna tools, redaction -------------------------------

@pytest.mark.postgres
def test_two_workers_on_postgres_share_one_study(postgres_url: str, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    name, password = _name(), _password(postgres_url)
    with caplog.at_level(logging.DEBUG):
        result = tune("breast_cancer", space=TINY, n_trials=10, train=FAST.replace(epochs=12), storage=postgres_url,
                      study_name=name, n_workers=2)
    trials = result.study.trials
    numbers = [t.number for t in trials]
    # No duplicated or lost trial: numbers are unique and contiguous, and the target is met exactly.
    assert sorted(numbers) == list(range(len(trials))) and len(_finished(result.study)) == 10
    assert all(t.state in COUNTED or t.user_attrs.get("kit_surplus") for t in trials)
    # Both processes ran trials.
    assert len({t.user_attrs["worker"] for t in _finished(result.study)}) == 2

    # The password is nowhere: result, bundle files, study attributes, logs, output.
    assert result.storage == redact(postgres_url) and "***" in result.storage
    assert result.bundle is not None
    saved = result.bundle.save(tmp_path / "b")
    texts = [p.read_text(errors="ignore") for p in saved.iterdir() if p.suffix == ".json"]
    out = capsys.readouterr()
    texts += [json.dumps(result.study.user_attrs), caplog.text, out.out, out.err, repr(result)]
    assert not [t for t in texts if password in t]

    # Stock Optuna tools read the study.
    listed = subprocess.run([str(ROOT / ".venv" / "bin" / "optuna"), "trials", "--storage", postgres_url,
                             "--study-name", name, "-f", "json"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == len(trials)


@pytest.mark.postgres
def test_worker_killed_mid_trial_is_retried_and_study_completes(postgres_url: str) -> None:
    name = _name()
    create_study("breast_cancer", space=SLOW_SPACE, n_trials=4, train=SLOW, storage=postgres_url, study_name=name,
                 pruner="none")
    # The URL travels in the environment, not argv (kept out of the process list).
    env = {**os.environ, "KIT_TUNE_STORAGE": postgres_url}
    proc = subprocess.Popen([KIT, "tune-worker", "--study", name, "--heartbeat", "1", "--worker", "1",
                             "--threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = _wait_for(postgres_url, name, complete=1, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = [t for t in optuna.load_study(study_name=name, storage=postgres_url).trials
              if t.state == optuna.trial.TrialState.RUNNING]
    assert len(killed) == 1  # left RUNNING by the dead worker
    time.sleep(4)  # longer than the grace period (2 x heartbeat + 1 s)

    ran = run_worker(postgres_url, name, heartbeat=1, worker=2, threads=1)
    study = optuna.load_study(study_name=name, storage=postgres_url)
    after = {t.number: t for t in study.trials}
    assert all(after[t.number].state == t.state and after[t.number].value == t.value for t in before)
    # The dead worker's trial is FAIL and a retry with the same params ran.
    assert after[killed[0].number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials
               if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == killed[0].number]
    assert len(retries) == 1 and retries[0].params == killed[0].params
    assert retries[0].state == optuna.trial.TrialState.COMPLETE
    assert len(_finished(study)) == 4 and ran == 4 - len(before)
