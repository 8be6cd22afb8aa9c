"""Fit's default latency evaluator measures this host, a phone (adb) and a board (ssh) in one search.

The phone and the board are the fakes of tests/fakes (found through DEVICEFIT_ADB/SSH/SCP, as a user would
point devicefit at their own tools); everything else is the real path: Fit builds the evaluator, leases and
the latency cache live in study.db, and a second study in the same storage reuses the measurements.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import optuna
import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators import Split, TaskData
from devicefit.evaluators._accuracy import DistillationSettings
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.search._fit import Fit, FitSettings
from devicefit.search._progress import Progress
from devicefit.search._screening import LadderSettings
from devicefit.search._task import Task
from tests.fakes.devices import make_fake_board, make_fake_phone

QUICK = MeasureSettings(
    warmup=1, blocks=2, runs_per_block=3, min_block_ms=0.0, max_blocks=2, block_warmup=0, remeasures=0,
    remeasure_pause_seconds=0.0, memory_runs=1, step_timeout_seconds=120.0,
)


@pytest.fixture(scope="module")
def toy_task(paddle, toy_encoder_factory) -> Task:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        features = rng.normal(size=(n, 6, 8)).astype("float32")
        return Split((features,), (features[:, :, 0].mean(axis=1) > 0).astype("int64"))

    data = TaskData(split(96), split(32), split(32), num_classes=5)
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    return Task("toy", toy_encoder_factory(num_layers=2), spec, data, "2-layer toy encoder")


def test_one_search_measures_host_phone_and_board(tmp_path, monkeypatch, toy_task) -> None:
    phone, board = make_fake_phone(tmp_path), make_fake_board(tmp_path)
    monkeypatch.setenv("DEVICEFIT_ADB", str(phone.adb))
    monkeypatch.setenv("DEVICEFIT_SSH", str(board.ssh))
    monkeypatch.setenv("DEVICEFIT_SCP", str(board.scp))
    devices = (
        load_profile("host-x86"),
        load_profile(str(phone.write_profile(tmp_path / "fake-phone.yaml"))),
        load_profile(str(board.write_profile(tmp_path / "fake-board.yaml"))),
    )
    out = tmp_path / "run"

    def fit(study_name: str) -> optuna.Study:
        settings = FitSettings(
            out=out, devices=devices, trials=1, study_name=study_name,
            distillation=DistillationSettings(epochs=1), measure=QUICK,
            ladder=LadderSettings(enabled=False),  # one measurement per device (the ladder is test_fit_ladder's)
        )
        with Fit(toy_task, settings, progress=Progress(1, quiet=True)) as run:
            assert run.run().completed == 1
        return optuna.load_study(study_name=study_name, storage=f"sqlite:///{out / 'study.db'}")

    attrs = fit("first").trials[0].user_attrs
    for device in ("host-x86", "fake-phone", "fake-board"):
        assert attrs[f"latency_source:{device}"] == "measured" and attrs[f"latency_ms:{device}"] > 0
        assert attrs[f"latency_cache_hit:{device}"] is False
        assert attrs[f"memory_peak_bytes:{device}"] > 0
    runners = {device: record["runner"] for device, record in attrs["record"]["latencies"].items()}
    assert runners == {"host-x86": "local", "fake-phone": "adb", "fake-board": "ssh"}
    assert phone.files_left() == [] and board.files_left() == []
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("select count(*) from devicefit_latency_cache").fetchone()[0] == 3
        assert db.execute("select count(*) from devicefit_device_leases").fetchone()[0] == 0  # all released

    # Another study in the same storage starts from the same teacher: every device's figure is reused.
    again = fit("second").trials[0].user_attrs
    for device in ("host-x86", "fake-phone", "fake-board"):
        assert again[f"latency_cache_hit:{device}"] is True
        assert again[f"latency_ms:{device}"] == attrs[f"latency_ms:{device}"]
