"""``devicefit export``: a deployable folder whose Python snippet really runs in the Paddle Lite interpreter.

The run itself uses the stand-in latency (its ``.nb`` files are not Paddle Lite models), so every ``.nb``
these tests run is converted by the export through the real Lite worker: the path a run without a ``.nb``
for a device takes.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest

from devicefit.evaluators._lite_client import find_lite_python
from tests.support.toy_runs import run_toy, toy_task

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]
ARM_PROFILE = """\
id: test-arm-board
name: An ARM board (for the export test; never reached)
soc: test
unit: cpu
places: arm
threads: 2
power_mode: low
reach:
  kind: none
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, paddle, toy_encoder_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    result = run_toy(toy_task(paddle, toy_encoder_factory), out, trials=5)
    for member in result.pareto:  # the stand-in .nb files are not Paddle Lite models: make the export convert
        (out / member.record.artifact_dir / "host-x86.nb").unlink()
    return out, result


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEVICEFIT, "export", *args], capture_output=True, text=True, timeout=600)


def test_export_converts_writes_a_true_manifest_and_a_snippet_that_runs(run, tmp_path, paddle) -> None:
    out, result = run
    member = result.pareto[0]
    key = member.record.key
    target = tmp_path / "deploy"
    done = _export(str(out), "--candidate", key[:-3], "--to", str(target), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["key"] == key and summary["converted"] == ["host-x86"]
    names = sorted(p.name for p in target.iterdir())
    assert names == ["README.md", "deploy.cc", "deploy.py", "host-x86.nb", "manifest.json", "model.pdiparams",
                     "model.pdmodel", "sample_input_0.npy"]
    manifest = json.loads((target / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((target / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert (target / name).stat().st_size == entry["size_bytes"]
    assert manifest["files"]["host-x86.nb"]["origin"].startswith("converted at export by Paddle Lite opt")
    assert manifest["candidate"]["spec"] == member.record.candidate.to_dict()
    assert manifest["candidate"]["trial"] == member.trial
    latency = manifest["metrics"]["latency"]["host-x86"]
    assert (latency["unit"], latency["source"], latency["value"]) == ("ms", "measured", member.record.latencies["host-x86"].latency_ms)
    assert manifest["metrics"]["test_accuracy"]["value"] == pytest.approx(member.test_accuracy)
    tools = manifest["tools"]
    assert tools["paddlelite"]["version"] == "2.13rc0" and tools["paddlelite"]["opt"]
    assert tools["paddlepaddle"] == version("paddlepaddle") and tools["optuna"] == version("optuna")
    assert tools["paddleslim"] == version("paddleslim") and tools["devicefit"] == version("devicefit")
    assert manifest["inputs"] == [{"name": "features", "shape": [-1, 6, 8], "dtype": "float32"}]

    # The Python snippet, in the Paddle Lite interpreter, prints what Paddle computes for the sample input.
    ran = subprocess.run([*find_lite_python(), "deploy.py", "host-x86"], cwd=target, capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "output 0: shape [1, 5] float32" in ran.stdout
    printed = np.array([float(v) for v in re.search(r"values: (.*)", ran.stdout).group(1).split()])  # type: ignore[union-attr]
    model = paddle.jit.load(str(target / "model"))
    expected = model(paddle.to_tensor(np.load(target / "sample_input_0.npy"))).numpy().reshape(-1)
    np.testing.assert_allclose(printed, expected, atol=1e-4)
    assert f"top-1 class: {int(expected.argmax())}" in ran.stdout


def test_a_device_the_run_did_not_target_gets_its_nb_and_the_cxx_snippet(run, tmp_path) -> None:
    out, result = run
    profile = tmp_path / "test-arm-board.yaml"
    profile.write_text(ARM_PROFILE)
    key = result.pareto[-1].record.key
    target = tmp_path / "arm"
    done = _export(str(out), "--candidate", key, "--device", str(profile), "--to", str(target), "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # --quiet
    manifest = json.loads((target / "manifest.json").read_text())
    assert list(manifest["devices"]) == ["test-arm-board"]
    assert manifest["devices"]["test-arm-board"]["places"] == "arm"
    assert manifest["metrics"]["latency"]["test-arm-board"] == {"value": None, "unit": "ms",
                                                                "source": "not evaluated in the run"}
    assert (target / "test-arm-board.nb").stat().st_size > 10_000
    cxx = (target / "deploy.cc").read_text()
    assert 'config.set_model_from_file(model);' in cxx and "config.set_threads(2);" in cxx
    assert "LITE_POWER_LOW" in cxx and "input->Resize({1, 6, 8});" in cxx


@pytest.mark.parametrize(
    ("candidate", "message"),
    [("nope", "--candidate nope: no evaluated candidate of the run has that key"),
     ("d", "--candidate d matches")],
)
def test_unknown_or_ambiguous_candidates_are_one_line_exit_2_and_write_nothing(run, tmp_path, candidate, message) -> None:
    out, _ = run
    target = tmp_path / "deploy"
    done = _export(str(out), "--candidate", candidate, "--to", str(target))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not target.exists() and not list(tmp_path.glob(".deploy*"))


def test_a_folder_with_files_is_refused_untouched(run, tmp_path) -> None:
    out, result = run
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    done = _export(str(out), "--candidate", result.pareto[0].record.key, "--to", str(target))
    assert done.returncode == 2 and "is not empty" in done.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
