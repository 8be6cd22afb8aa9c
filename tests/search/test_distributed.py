"""Distributed search for real: a throwaway PostgreSQL cluster, `devicefit fit` plus two `devicefit worker`s."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest

from devicefit.search._outputs import evaluated_records, pareto_records
from devicefit.search._records import objectives_for
from tests.support.postgres import ThrowawayPostgres

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]
TRIALS = 8


@pytest.fixture(scope="module")
def postgres():
    with ThrowawayPostgres() as server:
        yield server


def _wait_for_spec(url: str, study: str, timeout_seconds: float = 300) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            summaries = optuna.get_all_study_summaries(storage=url)
        except Exception:  # noqa: BLE001  (tables not created yet)
            summaries = []
        if any(s.study_name == study and "spec" in s.user_attrs for s in summaries):
            return
        time.sleep(0.5)
    raise TimeoutError("devicefit fit did not create the study in time")


def test_workers_share_one_study_without_duplicates(postgres, tmp_path) -> None:
    out = tmp_path / "run"
    fit = subprocess.Popen(
        [*DEVICEFIT, "fit", "--storage", postgres.url, "--study", "shared", "--trials", str(TRIALS), "--epochs", "0",
         "--sampler", "random", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for_spec(postgres.url, "shared")
    workers = [
        subprocess.Popen([*DEVICEFIT, "worker", "--storage", postgres.url, "--study", "shared"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    worker_outputs = [w.communicate(timeout=900) for w in workers]
    fit_stdout, fit_stderr = fit.communicate(timeout=900)
    assert fit.returncode == 0, fit_stderr[-3000:]
    for worker, (_, stderr) in zip(workers, worker_outputs):
        assert worker.returncode == 0, stderr[-3000:]

    study = optuna.load_study(study_name="shared", storage=postgres.url)
    trials = study.get_trials()
    assert len(trials) == TRIALS and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)

    # Each process ran its own trials; together they ran the study's trials, none twice.
    ran_here = [int(re.search(r"worker done: (\d+) trial", stderr).group(1)) for _, stderr in worker_outputs]
    pids = Counter(t.user_attrs["worker"]["pid"] for t in trials)
    assert sorted(pids.values()) == sorted([*ran_here, TRIALS - sum(ran_here)])
    assert len(pids) >= 2  # the work was actually shared

    # No candidate was built twice: one evaluated trial per key, and repeats point at it.
    built = [t for t in trials if "duplicate_of" not in t.user_attrs]
    keys = [t.user_attrs["key"] for t in built]
    assert len(keys) == len(set(keys))
    assert sorted(p.name for p in (out / "candidates").iterdir()) == sorted(keys)

    # The written front is the study's front.
    objectives = objectives_for(("host-x86",))
    expected = {item.record.key for item in pareto_records(evaluated_records(study), objectives)}
    written = {m["key"] for m in json.loads((out / "pareto.json").read_text())["members"]}
    assert written == expected and written
