"""A user's own model and data from the command line: ``--model file.py:factory`` (every dimension open) or
``--model model.pdmodel`` (no code: only precision and sparsity are open, see test_program_model.py), ``--data file.npz``.

The search runs for real (Paddle Lite measures on this host) on a 2-layer toy encoder, through a config
file, then the run is reported, exported and read as a DataFrame.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import devicefit.search as dfs
from devicefit.evaluators import DataError
from devicefit.search._user_model import load_npz
from tests.support.toy_runs import toy_data

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]

USER_MODEL = textwrap.dedent(
    """
    import paddle


    class Toy(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.embed = paddle.nn.Linear(8, 32)
            layer = paddle.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, normalize_before=True)
            self.encoder = paddle.nn.TransformerEncoder(layer, 2)
            self.head = paddle.nn.Linear(32, 5)

        def forward(self, features):
            return self.head(self.encoder(self.embed(features)).mean(axis=1))


    def build():
        paddle.seed(0)
        return Toy(), [paddle.static.InputSpec([None, 6, 8], "float32", "features")]


    def flat():
        model = paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(48, 5))
        return model, [paddle.static.InputSpec([None, 6, 8], "float32", "features")]


    def broken():
        raise RuntimeError("the checkpoint is missing")
    """
)


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEVICEFIT, *args], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    (folder / "toy.py").write_text(USER_MODEL)
    data = toy_data()
    arrays = {}
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        arrays[f"{name}_inputs"], arrays[f"{name}_labels"] = split.inputs[0], split.labels
    np.savez(folder / "toy.npz", **arrays)
    return folder


@pytest.fixture(scope="module")
def searched(user_files) -> tuple[Path, dict]:
    (user_files / "fit.yaml").write_text("model: toy.py:build\ndata: toy.npz\ndevices: [host-x86]\ntrials: 9\n"
                                          "epochs: 0\nseed: 3\nsampler: random\nout: runs/toy\n")
    result = _run("search", "-c", "fit.yaml", "--trials", "3", "--json", cwd=user_files)
    assert result.returncode == 0, result.stderr[-3000:]
    return user_files / "runs" / "toy", json.loads(result.stdout)


def test_npz_layout_with_several_inputs_and_its_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    arrays = {f"{s}_labels": rng.integers(0, 3, size=8) for s in ("train", "val", "test")}
    for split in ("train", "val", "test"):
        arrays[f"{split}_inputs_0"] = rng.normal(size=(8, 4)).astype("float32")
        arrays[f"{split}_inputs_1"] = rng.integers(0, 9, size=(8, 4))
    np.savez(tmp_path / "two.npz", **arrays)
    data = load_npz(tmp_path / "two.npz")
    assert len(data.val.inputs) == 2 and data.num_classes == int(max(arrays[f"{s}_labels"].max() for s in ("train", "val", "test"))) + 1
    del arrays["val_labels"]
    np.savez(tmp_path / "no-val.npz", **arrays)
    with pytest.raises(DataError, match="no 'val_labels' array"):
        load_npz(tmp_path / "no-val.npz")


def test_search_of_a_factory_model_from_a_config_file(searched) -> None:
    out, document = searched
    assert document["command"] == "search" and document["exit_code"] == 0 and document["completed"] == 3
    assert document["out"] == str(out.resolve()) and document["report"] is None
    run = json.loads((out / "run.json").read_text())
    assert (run["seed"], run["trials"], run["sampler"]) == (3, 3, "random")  # the file's seed, the flag's trials
    assert document["members"] and all(m["latency"]["host-x86"]["source"] == "measured" for m in document["members"])
    assert not (out / "report.html").exists() and not (out / "models").exists()  # search stops before them


def test_the_searched_run_is_reported_exported_and_tabulated(searched, tmp_path) -> None:
    out, document = searched
    key = document["members"][0]["key"]
    assert _run("report", str(out), "--quiet").returncode == 0 and (out / "report.html").is_file()
    exported = _run("export", str(out), "--candidate", key, "--to", str(tmp_path / "deploy"), "--json")
    assert exported.returncode == 0, exported.stderr
    files = json.loads(exported.stdout)["files"]
    assert files["host-x86.nb"]["origin"].startswith("copied from the run")  # measured in the run: a real .nb
    frame = dfs.trials_dataframe(out)
    assert len(frame) == 3 and list(frame["state"]) == ["COMPLETE"] * 3
    columns = list(frame.columns)
    assert columns.index("latency_source:host-x86") == columns.index("latency_ms:host-x86") + 1
    assert set(frame["latency_source:host-x86"]) == {"measured"}
    assert frame["on_front"].sum() == len(document["members"])
    assert frame.loc[frame["key"] == key, "accuracy_fraction"].item() == document["members"][0]["accuracy"]["value"]


def test_a_program_with_nothing_left_open_is_refused_in_one_line(user_files, paddle, tmp_path) -> None:
    model, spec = _load_factory(user_files)
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), str(tmp_path / "program" / "model"))
    out = tmp_path / "run"
    result = _run("fit", "--model", str(tmp_path / "program" / "model.pdmodel"), "--data", str(user_files / "toy.npz"),
                  "--space", "sparsities=0", "--out", str(out))  # host-x86 runs only fp32; sparsity fixed by --space
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--space: nothing is left to search in an inference program without its code: open: none" in line
    assert "closed: depth, heads, FFN width, hidden width (needs the model's code" in line
    assert "precision (the devices run only fp32)" in line and "sparsity (fixed to 0 by the bounds)" in line
    assert not out.exists()


def _load_factory(folder: Path):
    from devicefit.search._user_model import TaskSource, load_model

    return load_model(TaskSource("factory", f"{folder / 'toy.py'}:build", folder / "toy.npz"))


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ("toy.py:nope", "toy.npz", "toy.py has no function 'nope'"),
        ("toy.py:broken", "toy.npz", "broken() failed: RuntimeError: the checkpoint is missing"),
        ("toy.py:flat", "toy.npz", "devicefit cannot map Sequential"),
        ("toy.py:build", None, "needs --data file.npz"),
        ("toy.py", "toy.npz", "expected path/to/file.py:factory or path/to/model.pdmodel"),
        ("missing.py:build", "toy.npz", "no such file missing.py"),
        ("toy.py:build", "toy.txt", "expected a .npz or .csv file"),
    ],
)
def test_bad_models_and_data_are_one_line_exit_2_and_write_nothing(user_files, tmp_path, model, data, message) -> None:
    out = tmp_path / "run"
    args = ["fit", "--model", model, "--out", str(out), "--trials", "1"] + (["--data", data] if data else [])
    result = _run(*args, cwd=user_files)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("devicefit: error: ") and message in line
    assert "Traceback" not in result.stderr and not out.exists()
