"""Rung 3 inside a fit (``--final``): the Pareto members are re-trained, and what is exported, reported and
written is the re-trained model, labelled with its rung; a member whose rung 3 fails keeps its search figures.

The command-line runs are real (digits ViT, Paddle Lite on this host or a phone's predictor) with one epoch
of everything, so each takes about a minute; the failure and resume paths run on the toy encoder with a
stand-in latency.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import devicefit.search as dfs
from devicefit.evaluators._accuracy import DistillationSettings
from devicefit.evaluators._metrics import top1_accuracy
from devicefit.search._final import FINAL_DIR, FinalSettings, final_outcomes
from devicefit.search._fit import Fit, FitSettings
from devicefit.search._progress import Progress
from devicefit.search._report import build_report_data
from devicefit.spaces._export import MODEL_FILE, PARAMS_FILE, program_logits
from tests.support.toy_runs import HOST, StandInLatency, toy_task

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEVICEFIT, *args], capture_output=True, text=True, timeout=900)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def program_ops(path: Path) -> collections.Counter[str]:
    from devicefit.spaces._paddle import import_paddle

    import_paddle()
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc.FromString(path.read_bytes())
    return collections.Counter(op.type for block in program.blocks for op in block.ops)


@pytest.fixture(scope="module")
def digits_test():
    from devicefit.examples.digits_vit.task import build_task

    return build_task(seed=0).data.test


def open_study(out: Path):
    return optuna.load_study(study_name="devicefit", storage=f"sqlite:///{out / 'study.db'}")


# -- the command line, for real -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def final_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("final") / "run"
    args = ["fit", "--example", "digits-vit", "--device", "host-x86", "--trials", "2", "--epochs", "1",
            "--final", "--final-epochs", "1", "--out", str(out)]
    return out, args, run_cli(*args)


def test_fit_final_exports_the_retrained_members(final_run, digits_test) -> None:
    out, _, result = final_run
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert len(rows) == 2
    for index, row in enumerate(rows, 1):
        key = row["key"]
        assert f"rung 3 [{index}/2] {key}: val " in result.stderr  # a progress line per member
        assert row["accuracy_fidelity"] == "distill-1ep+2ep"  # the search's figure, which chose the front
        assert row["test_accuracy_fidelity"] == "final-distill-1ep" and row["final_status"] == "done"
        assert row["final_latency_source:host-x86"] == "measured"
        exported, retrained, searched = out / "models" / key, out / "candidates" / key / FINAL_DIR, out / "candidates" / key
        # The exported member is the re-trained model, not the search's export.
        for name in (MODEL_FILE, PARAMS_FILE, "host-x86.nb"):
            assert sha256(exported / name) == sha256(retrained / name)
        assert sha256(exported / PARAMS_FILE) != sha256(searched / PARAMS_FILE)
        assert sha256(exported / "host-x86.nb") != sha256(searched / "host-x86.nb")
        # Its test figure is the exported program's on the test split; the search's model's is kept beside it.
        logits = program_logits(exported, digits_test.inputs)
        assert float(row["test_accuracy"]) == pytest.approx(top1_accuracy(logits, digits_test.labels), abs=1e-6)
        before = top1_accuracy(program_logits(searched, digits_test.inputs), digits_test.labels)
        assert float(row["search_test_accuracy"]) == pytest.approx(before, abs=1e-6)
    members = json.loads((out / "pareto.json").read_text())["members"]
    assert all(m["test_accuracy"]["fidelity"] == "final-distill-1ep" and m["final"]["status"] == "done" for m in members)
    assert f"test {float(rows[0]['test_accuracy']):.4f} (final-distill-1ep)" in result.stdout


def test_export_and_report_take_the_retrained_member_from_the_study(final_run, tmp_path) -> None:
    out, _, result = final_run
    assert result.returncode == 0, result.stderr[-3000:]
    key = next(csv.DictReader((out / "pareto.csv").open()))["key"]
    exported = run_cli("export", str(out), "--candidate", key, "--to", str(tmp_path / "deploy"), "--quiet")
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((tmp_path / "deploy" / "manifest.json").read_text())
    assert manifest["files"][PARAMS_FILE]["sha256"] == sha256(out / "candidates" / key / FINAL_DIR / PARAMS_FILE)
    assert manifest["metrics"]["test_accuracy"]["fidelity"] == "final-distill-1ep"
    assert manifest["metrics"]["final"]["status"] == "done"
    assert "by rung 3" in manifest["files"]["host-x86.nb"]["origin"]
    # The report rebuilt from the study alone shows rung 3's figures, labelled.
    (out / "report.json").unlink()
    assert run_cli("report", str(out), "--quiet").returncode == 0
    report = json.loads((out / "report.json").read_text())
    metrics = {m["name"]: m for m in report["members"][0]["metrics"]}
    assert metrics["test accuracy"]["source"].startswith("test split, final-distill-1ep")
    assert metrics["final accuracy"]["source"] == "val split, final-distill-1ep"
    assert metrics["final latency host-x86"]["source"].startswith("measured")


def test_rerunning_the_fit_keeps_the_members_rung_3_finished(final_run) -> None:
    out, args, first = final_run
    assert first.returncode == 0, first.stderr[-3000:]
    params = {p.parent.parent.name: sha256(p) for p in (out / "candidates").glob(f"*/{FINAL_DIR}/{PARAMS_FILE}")}
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done by an earlier run with the same settings (final-distill-1ep), kept") == 2
    assert {p.parent.parent.name: sha256(p) for p in (out / "candidates").glob(f"*/{FINAL_DIR}/{PARAMS_FILE}")} == params


def test_an_int8_member_is_trained_with_qat_and_exported_as_trained(tmp_path) -> None:
    out = tmp_path / "run"
    result = run_cli("fit", "--example", "digits-vit", "--device", "sd865-cpu-4t", "--space", "precisions=int8",
                     "--trials", "1", "--epochs", "1", "--final", "--final-epochs", "1",
                     "--final-qat-epochs", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = csv.DictReader((out / "pareto.csv").open())
    assert row["precision"] == "int8" and row["final_status"] == "done"
    assert row["accuracy_fidelity"] == "distill-1ep+2ep+ptq-avg"
    assert row["test_accuracy_fidelity"] == "final-distill-1ep+qat-distill-1ep"
    assert row["final_latency_source:sd865-cpu-4t"] == "predicted (uncalibrated)"
    (member,) = json.loads((out / "pareto.json").read_text())["members"]
    qat = member["final"]["qat"]
    assert float(row["qat_gain_over_ptq"]) == pytest.approx(qat["qat_test"] - qat["ptq_test"], abs=1e-6)
    assert qat["gain_val"] == pytest.approx(qat["qat_val"] - qat["ptq_val"])
    assert "QAT over PTQ" in result.stdout
    exported, searched = out / "models" / row["key"], out / "candidates" / row["key"]
    # The exported int8 program is the QAT-trained one (Paddle's quantize_linear format), not the search's PTQ.
    ops = program_ops(exported / MODEL_FILE)
    assert ops["quantize_linear"] >= 10 and ops["dropout"] == 0
    assert sha256(exported / PARAMS_FILE) == sha256(searched / FINAL_DIR / PARAMS_FILE) != sha256(searched / PARAMS_FILE)
    assert sha256(exported / "sd865-cpu-4t.nb") != sha256(searched / "sd865-cpu-4t.nb")


# -- the failure and resume paths, on the toy encoder ---------------------------------------------------------


class FailsOnRetrained(StandInLatency):
    """The stand-in latency, failing for rung 3's re-trained programs."""

    def latency(self, artifact, profile, sample_inputs):  # noqa: ANN001, ANN201
        if FINAL_DIR in artifact.directory.parts:
            raise RuntimeError("the device went away")
        return super().latency(artifact, profile, sample_inputs)


def _toy_fit(task, out: Path, latency, stream: io.StringIO) -> Fit:
    settings = FitSettings(out=out, devices=(HOST,), trials=4, sampler="random",
                           distillation=DistillationSettings(epochs=0), final=FinalSettings(epochs=1, qat_epochs=1))
    return Fit(task, settings, progress=Progress(4, stream=stream), latency=latency)


@pytest.fixture(scope="module")
def failed_toy_run(tmp_path_factory, paddle, toy_encoder_factory):
    """A toy fit whose rung 3 failed for every member (the device went away)."""
    task, out, stream = toy_task(paddle, toy_encoder_factory), tmp_path_factory.mktemp("toy") / "run", io.StringIO()
    with _toy_fit(task, out, FailsOnRetrained(), stream) as fit:
        result = fit.run()
    return task, out, stream, result


def test_a_member_whose_rung_3_fails_keeps_its_search_figures(failed_toy_run) -> None:
    _, out, stream, result = failed_toy_run
    assert result.pareto
    assert "rung 3 failed for" in stream.getvalue() and "it keeps its search figures and files" in stream.getvalue()
    rows = {row["key"]: row for row in csv.DictReader((out / "pareto.csv").open())}
    for member in result.pareto:
        key = member.record.key
        assert member.final is not None and not member.retrained
        assert member.test_fidelity == member.record.accuracy.fidelity
        assert rows[key]["final_status"] == "failed: RuntimeError: the device went away"
        assert rows[key]["test_accuracy_fidelity"] == member.record.accuracy.fidelity
        assert (out / "models" / key / PARAMS_FILE).read_bytes() == (out / "candidates" / key / PARAMS_FILE).read_bytes()
        assert not (out / "candidates" / key / FINAL_DIR).exists()  # nothing half-made left to export
    study = open_study(out)
    assert {key: o.status for key, o in final_outcomes(study).items()} == {m.record.key: "failed" for m in result.pareto}
    data = build_report_data(study)
    for row in data.members:
        final = next(m for m in row.metrics if m.name == "final accuracy")
        assert final.value is None and final.source.startswith("rung 3 failed: RuntimeError: the device went away")
        test = next(m for m in row.metrics if m.name == "test accuracy")
        assert "no further training" in test.source
    frame = dfs.trials_dataframe(out)
    front = frame[frame["on_front"]]
    assert list(front["test_accuracy_fidelity"]) == list(front["accuracy_fidelity"])


def test_a_later_run_retrains_only_what_is_not_done(failed_toy_run, tmp_path) -> None:
    task, failed, _, _ = failed_toy_run
    out = tmp_path / "run"
    shutil.copytree(failed, out)  # the study and files of the failed run (paths in it are relative)
    stream = io.StringIO()
    with _toy_fit(task, out, StandInLatency(), stream) as fit:  # the device is back: the failed members run again
        result = fit.run()
    assert result.pareto and all(member.retrained for member in result.pareto)
    assert "done by an earlier run" not in stream.getvalue()
    for member in result.pareto:
        exported = out / "models" / member.record.key
        assert (exported / PARAMS_FILE).read_bytes() == (out / member.final.artifact_dir / PARAMS_FILE).read_bytes()
        logits = program_logits(exported, task.data.test.inputs)
        assert member.test_accuracy == pytest.approx(top1_accuracy(logits, task.data.test.labels), abs=1e-6)
        assert member.test_fidelity == "final-distill-1ep"
    stream = io.StringIO()
    with _toy_fit(task, out, FailsOnRetrained(), stream) as fit:  # all done: nothing is trained (nor fails) again
        fit.run()
    assert stream.getvalue().count("done by an earlier run with the same settings") == len(result.pareto)
    assert all(o.done for o in final_outcomes(open_study(out)).values())
    # A different length of rung 3 is another rung: it trains again.
    stream = io.StringIO()
    settings = FitSettings(out=out, devices=(HOST,), trials=4, sampler="random", distillation=DistillationSettings(epochs=0),
                           final=FinalSettings(epochs=2, qat_epochs=1))
    with Fit(task, settings, progress=Progress(4, stream=stream), latency=StandInLatency()) as fit:
        again = fit.run()
    assert "done by an earlier run" not in stream.getvalue()
    assert {m.test_fidelity for m in again.pareto} == {"final-distill-2ep"}
    frame = dfs.trials_dataframe(out)  # the test figure names its rung in pandas too
    front = frame[frame["on_front"]]
    assert set(front["test_accuracy_fidelity"]) == {"final-distill-2ep"}
    assert sorted(front["test_accuracy_fraction"]) == sorted(m.test_accuracy for m in again.pareto)


def test_final_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="final epochs must be >= 1"):
        FinalSettings(epochs=0)
    with pytest.raises(ValueError, match="final QAT epochs must be >= 1"):
        FinalSettings(qat_epochs=0)


def test_qat_leaves_the_blocks_an_int8_candidate_keeps_in_fp32_unquantized(paddle, toy_encoder_factory, toy_batch) -> None:
    import dataclasses

    from devicefit.evaluators._quant import QuantizationSettings, quantize_in_place
    from devicefit.search._final import _keep_fp32_blocks
    from devicefit.spaces import SpaceBounds, TransformerSpace

    inputs, labels = toy_batch
    space = TransformerSpace(toy_encoder_factory(), inputs, labels,
                             bounds=SpaceBounds(precisions=("int8",), max_fp32_layers=1))
    full = space.full_candidate()
    candidate = dataclasses.replace(full, precision="int8", calibration="avg", fp32_layers=(full.layers[0],))
    student = space.materialize(candidate)
    kept = {path.rsplit(".", 1)[0] for path in space.fp32_weight_names(student, candidate)}
    assert len(kept) == 6  # q, k, v, out, ffn in, ffn out of one block
    _keep_fp32_blocks(space, student, candidate)
    quantize_in_place(student, QuantizationSettings())
    layers = dict(student.named_sublayers())
    linears = [path for path, layer in layers.items() if type(layer).__name__ == "QuantizedLinear"]
    assert linears and not kept & set(linears)
    assert all(type(layers[path]) is paddle.nn.Linear for path in kept)
