"""Fixtures of the latency tests: tiny exported models, the real Lite worker, and the fake phone and board.

The fakes (``tests/fakes/fake_adb.py``, ``fake_ssh.py``, ``fake_benchmark_bin.py``) stand in only for what
cannot exist here, a phone and a board: they really run what devicefit gives them on this machine, so the
runners' whole path (copy, run, parse, clean up, time out) is exercised.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from devicefit.device_profiles import DeviceProfile, Reach
from devicefit.evaluators._lite_client import LiteUnavailableError, LiteWorker, find_lite_python
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.spaces._export import Artifact, export_inference_model

FAKES = Path(__file__).resolve().parents[1] / "fakes"
SEQ, D_IN = 8, 16

#: A protocol small enough for tests: few runs, few blocks, no pauses.
QUICK = MeasureSettings(
    warmup=1,
    blocks=2,
    runs_per_block=3,
    min_block_ms=0.0,
    max_blocks=3,
    block_warmup=0,
    remeasures=0,
    remeasure_pause_seconds=0.0,
    reference=False,
    memory_runs=1,
    step_timeout_seconds=60.0,
)


def lite_python() -> str:
    try:
        return find_lite_python()[0]
    except LiteUnavailableError as exc:
        pytest.fail(f"the Paddle Lite interpreter is required for these tests: {exc}", pytrace=False)


@dataclasses.dataclass(frozen=True)
class TinyExport:
    artifact: Artifact
    inputs: tuple[Path, ...]


def _export(paddle, directory: Path, *, d_model: int, layers: int, seed: int) -> TinyExport:
    class Tiny(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.embed = paddle.nn.Linear(D_IN, d_model)
            layer = paddle.nn.TransformerEncoderLayer(d_model, 4, 2 * d_model, dropout=0.0)
            self.encoder = paddle.nn.TransformerEncoder(layer, layers)
            self.head = paddle.nn.Linear(d_model, 5)

        def forward(self, x):
            return self.head(self.encoder(self.embed(x)).mean(axis=1))

    paddle.seed(seed)
    model = Tiny()
    spec = [paddle.static.InputSpec([1, SEQ, D_IN], "float32", "x")]
    artifact = export_inference_model(model, spec, directory)
    x = np.random.default_rng(seed).standard_normal((1, SEQ, D_IN)).astype("float32")
    np.save(directory / "sample_input_0.npy", x)
    return TinyExport(artifact, (directory / "sample_input_0.npy",))


@pytest.fixture(scope="session")
def tiny(paddle, tmp_path_factory: pytest.TempPathFactory) -> TinyExport:
    """A 1-layer encoder (d=32) classifier, exported."""
    return _export(paddle, tmp_path_factory.mktemp("tiny"), d_model=32, layers=1, seed=0)


@pytest.fixture(scope="session")
def wide(paddle, tmp_path_factory: pytest.TempPathFactory) -> TinyExport:
    """A 2-layer encoder (d=256) classifier: more weights and work than ``tiny``."""
    return _export(paddle, tmp_path_factory.mktemp("wide"), d_model=256, layers=2, seed=1)


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One reference-model cache folder for the whole session (exporting it costs seconds)."""
    return tmp_path_factory.mktemp("reference")


@pytest.fixture(scope="session")
def worker() -> Iterator[LiteWorker]:
    with LiteWorker([lite_python()], timeout_seconds=120) as client:
        yield client


def _wrapper(path: Path, lines: list[str]) -> Path:
    path.write_text("#!/bin/sh\n" + "\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


@dataclasses.dataclass
class FakePhone:
    """A fake phone: the ``adb`` wrapper, its state file and sandbox, and a ``benchmark_bin`` to push."""

    adb: Path
    state_file: Path
    root: Path
    benchmark_bin: Path
    serial: str = "FAKE0001"

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def set_state(self, **changes: object) -> None:
        self.state_file.write_text(json.dumps({**self.state(), **changes}))

    def profile(self, *, places: str = "x86", benchmark_bin: Path | None = None, **fields: object) -> DeviceProfile:
        reach = Reach(kind="adb", serial=self.serial, benchmark_bin=str(benchmark_bin or self.benchmark_bin))
        defaults: dict[str, object] = {"unit": "cpu"}
        return DeviceProfile(
            id="fake-phone", name="FAKE phone", soc="x86 host posing as a phone", places=places, reach=reach,
            **{**defaults, **fields},  # type: ignore[arg-type]
        )

    def files_left(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())


@pytest.fixture
def fake_phone(tmp_path: Path) -> FakePhone:
    """A fake phone listed by the fake adb as FAKE0001, whose benchmark_bin is the fake one."""
    root = tmp_path / "phone"
    (root / "data" / "local" / "tmp").mkdir(parents=True)
    state = tmp_path / "adb-state.json"
    state.write_text(json.dumps({"root": str(root), "devices": {"FAKE0001": "device"}}))
    adb = _wrapper(tmp_path / "adb", [f'exec "{sys.executable}" "{FAKES / "fake_adb.py"}" --state "{state}" "$@"'])
    benchmark_bin = _wrapper(
        tmp_path / "benchmark_bin", [f'exec "{lite_python()}" "{FAKES / "fake_benchmark_bin.py"}" "$@"']
    )
    return FakePhone(adb, state, root, benchmark_bin)


def broken_benchmark_bin(directory: Path, name: str, lines: list[str]) -> Path:
    """A user's benchmark_bin that misbehaves (crashes, hangs, prints something else)."""
    return _wrapper(directory / name, lines)


@dataclasses.dataclass
class FakeBoard:
    """A fake board: ``ssh``/``scp`` wrappers, their state file and the sandbox home folder."""

    ssh: Path
    scp: Path
    state_file: Path
    home: Path
    host: str = "board-1"

    def set_state(self, **changes: object) -> None:
        state = json.loads(self.state_file.read_text())
        self.state_file.write_text(json.dumps({**state, **changes}))

    def profile(self, *, python: str | None = None, **fields: object) -> DeviceProfile:
        reach = Reach(kind="ssh", host=self.host, python=python or lite_python())
        return DeviceProfile(
            id="fake-board", name="FAKE board", soc="x86 host posing as a board", unit="cpu", places="x86",
            reach=reach, **fields,  # type: ignore[arg-type]
        )

    def files_left(self) -> list[Path]:
        return sorted(p for p in self.home.rglob("*") if p.is_file())


@pytest.fixture
def fake_board(tmp_path: Path) -> FakeBoard:
    """A fake board 'board-1' whose login home is a sandbox folder and whose Python is the Lite interpreter."""
    home = tmp_path / "board"
    home.mkdir()
    state = tmp_path / "ssh-state.json"
    state.write_text(json.dumps({"home": str(home), "hosts": ["board-1"]}))
    fake = FAKES / "fake_ssh.py"
    ssh = _wrapper(tmp_path / "ssh", [f'exec "{sys.executable}" "{fake}" --state "{state}" ssh "$@"'])
    scp = _wrapper(tmp_path / "scp", [f'exec "{sys.executable}" "{fake}" --state "{state}" scp "$@"'])
    return FakeBoard(ssh, scp, state, home)
