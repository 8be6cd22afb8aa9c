"""The report's data, computed from a study alone, and its page; ``devicefit report`` on folders and URLs."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from devicefit.search._hypervolume import hypervolume, normalization_box
from devicefit.search._report import build_report_data, write_report
from devicefit.search._report_html import render_html
from devicefit.search._results import kernel_breakdown_ms
from tests.support.toy_runs import copy_study_with, predicted_npu_record, run_toy, toy_task

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, paddle, toy_encoder_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    result = run_toy(toy_task(paddle, toy_encoder_factory), out, trials=8)
    study = optuna.load_study(study_name="devicefit", storage=f"sqlite:///{out / 'study.db'}")
    return out, result, study


@pytest.fixture(scope="module")
def mixed_study(toy_run, tmp_path_factory):
    """The toy run's records as a predictor and an NPU runner would store them (see toy_runs.predicted_npu_record)."""
    out, _, _ = toy_run
    url = f"sqlite:///{tmp_path_factory.mktemp('mixed') / 'mixed.db'}"
    study = copy_study_with(f"sqlite:///{out / 'study.db'}", url, "mixed", ["host-x86", "kirin-npu"], predicted_npu_record)
    return url, study


def test_the_report_shows_the_members_of_pareto_csv(toy_run) -> None:
    out, result, study = toy_run
    data = build_report_data(study, storage=f"sqlite:///{out / 'study.db'}", out=out)
    csv_keys = [row["key"] for row in csv.DictReader((out / "pareto.csv").open())]
    assert [m.key for m in data.members] == csv_keys == [m.record.key for m in result.pareto]
    assert data.devices == ("host-x86",)
    assert data.trial_counts["complete"] + data.trial_counts["duplicates"] == result.completed
    (front,) = data.fronts
    assert len(front.points) == data.trial_counts["complete"]
    assert front.provenance_counts == {"measured": data.trial_counts["complete"]}
    assert {p.key for p in front.points if p.member} == set(csv_keys)
    # Test accuracy was stored in the study by the fit, so the rebuilt report shows it for every member.
    tested = {m.key: next(x for x in m.metrics if x.name == "test accuracy") for m in data.members}
    assert all(metric.value is not None and metric.source.startswith("test split") for metric in tested.values())
    latency = next(x for x in data.members[0].metrics if x.name == "latency host-x86")
    assert (latency.unit, latency.source) == ("ms", "measured, stand-in")


def test_hypervolume_history_is_exact_and_grows(toy_run) -> None:
    _, _, study = toy_run
    data = build_report_data(study)
    by_name = {s.name: s for s in data.hypervolume}
    assert set(by_name) == {"host-x86: accuracy x latency", "all objectives"}
    series = by_name["host-x86: accuracy x latency"]
    assert np.all(np.diff(series.values) >= -1e-12) and 0 < series.values[-1] <= 1
    # Recompute the final value independently from the front points.
    (front,) = data.fronts
    points = np.array([[-p.accuracy, p.latency_ms] for p in front.points if p.feasible])
    ideal, reference = normalization_box(points)
    assert series.values[-1] == pytest.approx(hypervolume((points - ideal) / (reference - ideal), [1.0, 1.0]))
    assert series.trials == tuple(sorted(p.trial for p in front.points))
    assert series.latency_provenance == {"measured": len(front.points)}


def test_extra_fields_of_other_evaluators_reach_the_report(mixed_study) -> None:
    url, study = mixed_study
    data = build_report_data(study, storage=url)
    assert data.devices == ("host-x86", "kirin-npu")
    host, npu = data.fronts
    assert set(host.provenance_counts) == {"measured", "predicted (calibrated)"} and host.mixed
    assert set(npu.provenance_counts) == {"predicted (calibrated)", "predicted (uncalibrated)"} and not npu.mixed
    assert any("host-x86: the latencies are of mixed kinds" in note for note in data.notes)
    assert any(s.name.startswith("host-x86") and len(s.latency_provenance) == 2 for s in data.hypervolume)
    member_keys = [m.key for m in data.members]
    assert {b.key for b in data.breakdowns} == set(member_keys) and all(b.device == "kirin-npu" for b in data.breakdowns)
    breakdown = dict(data.breakdowns[0].kernels)
    assert set(breakdown) == {"fc", "softmax", "layer_norm", "(overhead)"}  # per kernel *type*, targets summed
    assert breakdown["fc"] == pytest.approx(0.6 * data.breakdowns[0].latency_ms)
    assert sum(breakdown.values()) == pytest.approx(data.breakdowns[0].latency_ms)
    assert {f.key for f in data.fallbacks} == set(member_keys)
    by_trial = {m.key: m.trial for m in data.members}
    for item in data.fallbacks:
        assert dict(item.cpu_ops) == ({"softmax": 3, "fc": 1} if by_trial[item.key] % 2 else {})
        assert dict(item.accelerator_ops or {}) == {"fc": 11, "layer_norm": 6}


def test_kernel_breakdown_is_absent_unless_recorded() -> None:
    assert kernel_breakdown_ms({"latency_ms": 1.0, "source": "measured"}) is None
    assert kernel_breakdown_ms({"kernels_ms": {"fc": 0.5, "arm/fc/int8": 0.25, "softmax": 0.1}}) == {"fc": 0.75, "softmax": 0.1}


def test_the_page_draws_every_point_with_its_provenance_and_loads_nothing(mixed_study, tmp_path) -> None:
    url, study = mixed_study
    data = build_report_data(study, storage=url)
    page = render_html(data)
    for index, front in enumerate(data.fronts):
        svg = re.search(f'<svg id="front-{index}".*?</svg>', page, re.S).group(0)  # type: ignore[union-attr]
        assert f'data-marks="{len(front.points)}"' in svg
        predicted = sum(1 for p in front.points if p.provenance.startswith("predicted"))
        assert svg.count('class="mark predicted"') == predicted
        assert svg.count('class="mark measured"') == len(front.points) - predicted
    assert "predicted latency (hollow diamond)" in page and "measured latency (filled circle)" in page
    assert "softmax x3" in page  # the fallback table
    for external in ("src=", "<link", "@import", "url(", "https://"):
        assert external not in page
    written = write_report(data, tmp_path / "r" / "report.html")
    assert json.loads(written.with_suffix(".json").read_text())["devices"] == ["host-x86", "kirin-npu"]


def test_fit_writes_the_report_and_search_does_not(toy_run, paddle, toy_encoder_factory, tmp_path) -> None:
    out, _, _ = toy_run
    assert (out / "report.html").stat().st_size > 5000 and (out / "report.json").is_file()
    searched = tmp_path / "searched"
    result = run_toy(toy_task(paddle, toy_encoder_factory), searched, trials=3, export=False)
    assert (searched / "pareto.csv").is_file() and result.pareto
    assert not (searched / "report.html").exists() and not (searched / "models").exists()
    members = json.loads((searched / "pareto.json").read_text())["members"]
    assert all(m["files"]["model"].startswith("candidates/") and m["test_accuracy"]["value"] is None for m in members)


def test_report_command_rebuilds_from_a_folder_or_a_storage_url(toy_run, mixed_study, tmp_path) -> None:
    out, _, _ = toy_run
    (out / "report.html").unlink()
    result = subprocess.run([*DEVICEFIT, "report", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (out / "report.html").is_file() and result.stdout.strip() == str(out / "report.html")
    url, _ = mixed_study
    target = tmp_path / "mixed.html"
    result = subprocess.run([*DEVICEFIT, "report", url, "--study", "mixed", "--to", str(target), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["report"] == str(target.resolve()) and document["devices"] == ["host-x86", "kirin-npu"]
    assert "kirin-npu" in target.read_text()


def _folder_with_a_photo(folder: Path) -> Path:
    folder.mkdir()
    (folder / "cat.jpg").write_text("x")
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "no such folder"),
        (lambda tmp: _folder_with_a_photo(tmp / "photos"), "is not a devicefit run"),
        (lambda tmp: "sqlite:///" + str(tmp / "none.db"), "no such database file"),
    ],
)
def test_report_of_something_that_is_not_a_run_is_one_line_exit_2(tmp_path, make, message) -> None:
    target = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = subprocess.run([*DEVICEFIT, "report", str(target)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("devicefit: error: ")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_stored_records_are_valued_as_trial_records_value_them(toy_run) -> None:
    from devicefit.search._records import WORST_LATENCY, TrialRecord, objectives_for
    from devicefit.search._results import record_value, trial_views

    _, _, study = toy_run
    names = [o.name for o in objectives_for(("host-x86",))] + [WORST_LATENCY]
    for view in trial_views(study):
        if view.evaluated:
            record = TrialRecord.from_dict(dict(view.record))
            assert [record_value(view.record, n) for n in names] == [record.value(n) for n in names]


def test_latency_provenance_is_the_label_every_display_uses() -> None:
    from devicefit.evaluators._types import LatencyResult
    from devicefit.search._results import latency_provenance

    assert latency_provenance({"source": "measured"}) == "measured"
    assert latency_provenance({"source": "predicted"}) == "predicted"
    assert latency_provenance({"source": "predicted", "calibrated": False}) == "predicted (uncalibrated)"
    assert latency_provenance({"source": "predicted", "calibrated": True}) == "predicted (calibrated)"
    assert latency_provenance({"source": "predicted", "predictor": {"calibrated": True}}) == "predicted (calibrated)"
    assert latency_provenance({"source": "predicted", "predictor": {"calibrated": False}}) == "predicted (uncalibrated)"
    for source, calibrated in (("measured", None), ("predicted", True), ("predicted", False)):
        result = LatencyResult("d", 1.0, source, "s", None, None, None, 0, 1, 0.0, 1, calibrated=calibrated)
        assert latency_provenance(result.to_dict()) == result.source_label


def test_ticks_are_round_and_inside_the_range() -> None:
    from devicefit.search._report_html import nice_ticks

    assert nice_ticks(0.88, 0.96) == [0.88, 0.9, 0.92, 0.94, 0.96]
    assert nice_ticks(-0.06, 2.06, integer=True) == [0.0, 1.0, 2.0]
    assert nice_ticks(0.21, 0.87) == [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_a_run_whose_trials_all_failed_still_has_a_report(tmp_path) -> None:
    from devicefit.search._records import objectives_for

    objectives = objectives_for(("host-x86",))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'failed.db'}", directions=[o.direction for o in objectives])
    study.set_user_attr("objectives", [o.name for o in objectives])
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"error": "opt crashed"}))
    data = build_report_data(study)
    assert data.trial_counts["failed"] == 1 and data.members == () and data.hypervolume == ()
    page = render_html(data)
    assert "No candidate was evaluated on host-x86" in page and "No Pareto member" in page
