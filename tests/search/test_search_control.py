"""Budgets, the time budget, and recovery after SIGKILL, on the toy task with a fast stand-in for latency.

The stand-in is not a device fake: it only replaces measurement so these tests exercise the search
logic in seconds (the real Lite path is covered by test_fit.py and test_cli.py).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators import Split, TaskData
from devicefit.evaluators._accuracy import DistillationSettings
from devicefit.evaluators._latency import LatencyEvaluator
from devicefit.evaluators._types import LatencyResult
from devicefit.search._budget import Budget
from devicefit.search._fit import Fit, FitSettings
from devicefit.search._progress import Progress
from devicefit.search._task import Task

HOST = load_profile("host-x86")


class SizeLatency(LatencyEvaluator):
    """Latency proportional to the exported size (so smaller candidates are faster), after an optional sleep."""

    def __init__(self, sleep_seconds: float = 0.0) -> None:
        self.sleep_seconds = sleep_seconds

    def latency(self, artifact, profile, sample_inputs):
        time.sleep(self.sleep_seconds)
        (artifact.directory / f"{profile.id}.nb").write_bytes(artifact.params_file.read_bytes())
        latency_ms = artifact.size_bytes / 100_000
        return LatencyResult(profile.id, latency_ms, "measured", "stand-in", None, None, None, 0, 1, 0.0, artifact.size_bytes)


def _split(rng, n):
    features = rng.normal(size=(n, 6, 8)).astype("float32")
    labels = (features[:, :, 0].mean(axis=1) > 0).astype("int64")
    return Split((features,), labels)


@pytest.fixture(scope="module")
def task(paddle, toy_encoder_factory) -> Task:
    rng = np.random.default_rng(1)
    data = TaskData(_split(rng, 128), _split(rng, 64), _split(rng, 64), num_classes=5)
    return Task("toy", toy_encoder_factory(), [paddle.static.InputSpec([None, 6, 8], "float32")], data, "toy")


def settings(out: Path, **overrides) -> FitSettings:
    values = dict(out=out, devices=(HOST,), trials=6, distillation=DistillationSettings(epochs=0), sampler="random")
    values.update(overrides)
    return FitSettings(**values)


def run(task, fit_settings, latency=None):
    with Fit(task, fit_settings, progress=Progress(fit_settings.trials, quiet=True), latency=latency or SizeLatency()) as fit:
        return fit.run()


def test_infeasible_candidates_never_reach_the_front(task, tmp_path) -> None:
    # The teacher's exported size is about 0.1 MB: a latency budget of 0.9 ms (size / 100 kB) excludes it.
    result = run(task, settings(tmp_path / "run", budget=Budget(latency_ms={"host-x86": 0.9})))
    study = optuna.load_study(study_name="devicefit", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    infeasible = {t.user_attrs["key"] for t in complete if t.system_attrs["constraints:latency_ms:host-x86"] > 0}
    feasible = {t.user_attrs["key"] for t in complete if t.system_attrs["constraints:latency_ms:host-x86"] <= 0}
    assert infeasible and feasible  # the budget splits this run's candidates
    front = {member.record.key for member in result.pareto}
    assert front and front <= feasible
    assert all(member.record.latencies["host-x86"].latency_ms <= 0.9 for member in result.pareto)


def test_a_budget_nobody_meets_is_said_and_the_closest_are_shown(task, tmp_path) -> None:
    result = run(task, settings(tmp_path / "run", trials=3, budget=Budget(latency_ms={"host-x86": 1e-6})))
    assert not result.outputs.budget_met and result.pareto == []
    document = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert document["budget_met"] is False and document["members"] == []
    closest = document["closest"]
    assert 1 <= len(closest) <= 3
    violations = [c["constraints"]["latency_ms:host-x86"] for c in closest]
    assert violations == sorted(violations) and violations[0] > 0


def test_accuracy_drop_budget_is_relative_to_the_teacher(task, tmp_path) -> None:
    result = run(task, settings(tmp_path / "run", trials=4, budget=Budget(max_accuracy_drop=0.0)))
    study = optuna.load_study(study_name="devicefit", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    teacher = study.user_attrs["teacher_accuracy"]
    assert all(member.record.accuracy.accuracy >= teacher for member in result.pareto)


def test_time_budget_ends_the_run_cleanly_with_its_front(task, tmp_path) -> None:
    started = time.monotonic()
    result = run(task, settings(tmp_path / "run", trials=50, time_seconds=4.0), latency=SizeLatency(sleep_seconds=1.0))
    elapsed = time.monotonic() - started
    assert result.stopped_by_time
    assert 1 <= result.completed < 50
    assert (tmp_path / "run" / "pareto.csv").exists() and result.pareto
    assert elapsed < 60  # generous: the point is that it stopped long before 50 trials of >= 1 s


KILLABLE = textwrap.dedent(
    """
    import sys, time, zlib
    sys.path.insert(0, {tests!r})
    import numpy as np
    from devicefit.spaces._paddle import import_paddle
    paddle = import_paddle()
    from search.test_search_control import SizeLatency, settings, _split
    from devicefit.evaluators import TaskData
    from devicefit.search._fit import Fit
    from devicefit.search._progress import Progress
    from devicefit.search._task import Task
    from pathlib import Path

    class Toy(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.embed = paddle.nn.Linear(8, 32)
            self.encoder = paddle.nn.TransformerEncoder(paddle.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0), 3)
            self.head = paddle.nn.Linear(32, 5)
        def forward(self, features):
            return self.head(self.encoder(self.embed(features)).mean(axis=1))

    paddle.seed(0)
    model = Toy(); model.eval()
    rng = np.random.default_rng(1)
    data = TaskData(_split(rng, 128), _split(rng, 64), _split(rng, 64), num_classes=5)
    task = Task("toy", model, [paddle.static.InputSpec([None, 6, 8], "float32")], data, "toy")
    sleep = float(sys.argv[2])
    with Fit(task, settings(Path(sys.argv[1]), trials=4), progress=Progress(4), latency=SizeLatency(sleep)) as fit:
        fit.run()
    """
)


def _running_trials(db: Path) -> int:
    """RUNNING trials in an Optuna SQLite file, read through a read-only connection.

    Polling with ``optuna.load_study`` instead made the test a second writer: opening an RDB storage
    creates the schema, and racing the child's own creation of it stalled the child in about one run in five.
    """
    if not db.exists():
        return 0
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return 0
    try:
        return int(connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0])
    except sqlite3.Error:  # the tables do not exist yet, or the child holds a write lock right now
        return 0
    finally:
        connection.close()


def test_sigkill_mid_trial_leaves_it_failed_and_a_rerun_resumes_cleanly(tmp_path) -> None:
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE.format(tests=str(Path(__file__).resolve().parents[1])))
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, str(script), str(out), "30"], stderr=subprocess.PIPE, text=True)
    storage = f"sqlite:///{out / 'study.db'}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until the first trial is running (inside its 30 s measurement)
        time.sleep(0.5)
        if _running_trials(out / "study.db"):
            break
    time.sleep(1.0)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    stuck = optuna.load_study(study_name="devicefit", storage=storage).get_trials()
    # What SIGKILL leaves behind: the first trial RUNNING forever, the other warm starts still queued.
    assert [t.state for t in stuck][0] == optuna.trial.TrialState.RUNNING
    assert {t.state for t in stuck[1:]} <= {optuna.trial.TrialState.WAITING}

    rerun = subprocess.run([sys.executable, str(script), str(out), "0"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    trials = optuna.load_study(study_name="devicefit", storage=storage).get_trials()
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert trials[0].user_attrs["interrupted"] is True
    assert "process ended mid-trial" in trials[0].user_attrs["error"]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # the interrupted trial did not use up the budget
    assert "resuming study" in rerun.stderr
