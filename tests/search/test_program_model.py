"""``devicefit fit --model model.pdmodel``: an inference program without its code is searched by what needs no
code (sparsity here: ``host-x86`` runs only fp32), and the run is exported, reported and joined like any other.

Everything is real: the shipped digits-ViT teacher saved by plain ``paddle.jit.save``, Paddle Lite converting
and measuring on this host (the Lite worker of ``make setup``).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.programs import export_digits_program

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEVICEFIT, *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    folder = tmp_path_factory.mktemp("program")
    model_file, npz = export_digits_program(folder)
    out = folder / "run"
    result = _run("fit", "--model", str(model_file), "--data", str(npz), "--device", "host-x86", "--trials", "3",
                  "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_the_fit_searches_the_program_and_says_what_is_open(fitted) -> None:
    out, result = fitted
    banner = result.stderr
    assert ("open: sparsity (0/0.25/0.5/0.75 of every matmul weight (magnitude)); closed: depth, heads, FFN width, "
            "hidden width (needs the model's code") in banner
    assert "precision (the devices run only fp32)" in banner
    assert "accuracy on val of each candidate as built, not fine-tuned (no-finetune:" in banner
    with (out / "pareto.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["key"].startswith("prog-") for row in rows)
    assert all(row["depth"] == row["layers"] == row["heads"] == row["ffn"] == "" for row in rows)
    assert all(row["accuracy_fidelity"] == "no-finetune" and row["latency_source:host-x86"] == "measured" for row in rows)
    pareto = json.loads((out / "pareto.json").read_text())
    assert all(member["candidate"]["program"] is True for member in pareto["members"])
    dense = [row for row in rows if row["sparsity"] == "0"]
    assert dense and float(dense[0]["test_accuracy"]) > 0.95  # the teacher itself (96.98% on this split)
    # The warm starts: the program as it is, the sparsest, the middle sparsity.
    assert sorted(c.name.split("-")[1] for c in (out / "candidates").iterdir()) == ["fp32", "s50", "s75"]
    assert (out / "report.html").is_file()


def test_a_member_is_exported_with_its_nb(fitted, tmp_path) -> None:
    out, _ = fitted
    with (out / "pareto.csv").open() as handle:
        key = next(csv.DictReader(handle))["key"]
    result = _run("export", str(out), "--candidate", key, "--device", "host-x86", "--to", str(tmp_path / "deploy"),
                  "--json")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert files["host-x86.nb"]["size_bytes"] > 100_000 and (tmp_path / "deploy" / "host-x86.nb").stat().st_size > 100_000
    assert {"model.pdmodel", "model.pdiparams", "deploy.py"} <= set(files)


def test_report_and_worker_load_the_program_run(fitted) -> None:
    out, _ = fitted
    report = _run("report", str(out), "--quiet")
    assert report.returncode == 0, report.stderr
    worker = _run("worker", "--storage", f"sqlite:///{out / 'study.db'}")  # rebuilds the task from the run spec
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert "worker done: 0 trial(s) ran here; the study has its 3 trials" in worker.stderr


def test_final_is_refused_for_a_program_in_one_line(fitted, tmp_path) -> None:
    out, _ = fitted
    model_file, npz = out.parent / "vit.pdmodel", out.parent / "digits.npz"
    assert model_file.is_file()
    result = _run("fit", "--model", str(model_file), "--data", str(npz), "--device", "host-x86", "--trials", "2",
                  "--final", "--out", str(tmp_path / "final"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--final re-trains" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "final").exists()
