"""Fixtures of the evaluator tests.

Latency: tiny exported models, the real Lite worker, and the fake phone and board. Accuracy: the shipped
digits ViT teacher on a small slice of its data, and a student with random weights.

The fakes (``tests/fakes/fake_adb.py``, ``fake_ssh.py``, ``fake_benchmark_bin.py``) stand in only for what
cannot exist here, a phone and a board: they really run what devicefit gives them on this machine, so the
runners' whole path (copy, run, parse, clean up, time out) is exercised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from devicefit.evaluators import TaskData
from devicefit.evaluators._lite_client import LiteUnavailableError, LiteWorker, find_lite_python
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.spaces._export import Artifact, export_inference_model
from tests.fakes.devices import FakeBoard, FakePhone, make_fake_board, make_fake_phone, write_script

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


@pytest.fixture
def fake_phone(tmp_path: Path) -> FakePhone:
    """A fake phone listed by the fake adb as FAKE0001, whose benchmark_bin is the fake one."""
    lite_python()
    return make_fake_phone(tmp_path)


@pytest.fixture
def fake_board(tmp_path: Path) -> FakeBoard:
    """A fake board 'board-1' whose login home is a sandbox folder and whose Python is the Lite interpreter."""
    lite_python()
    return make_fake_board(tmp_path)


def broken_benchmark_bin(directory: Path, name: str, lines: list[str]) -> Path:
    """A user's benchmark_bin that misbehaves (crashes, hangs, prints something else)."""
    return write_script(directory / name, lines)


# -- accuracy ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SmallDigits:
    """The trained 4-layer ViT (d=64), a space over it, and 320/100/100 digits."""

    teacher: object
    input_spec: list
    data: TaskData
    space: object


@pytest.fixture(scope="session")
def digits(paddle) -> SmallDigits:
    from devicefit.examples.digits_vit.task import build_task
    from devicefit.spaces import TransformerEncoderSpace

    task = build_task(seed=0)
    data = TaskData(
        train=task.data.train.take(np.arange(320)),
        val=task.data.val.take(np.arange(100)),
        test=task.data.test.take(np.arange(100)),
        num_classes=task.data.num_classes,
    )
    calibration = data.train.take(np.arange(128))
    space = TransformerEncoderSpace(task.teacher, calibration.inputs, calibration.labels)
    return SmallDigits(task.teacher, task.input_spec, data, space)


@pytest.fixture(scope="session")
def random_student_factory(paddle):
    """Students with the teacher's architecture and random weights: a deliberately broken model."""

    def make(seed: int = 123):
        from devicefit.examples.digits_vit.model import DigitsViT, ViTConfig, read_teacher_metadata

        paddle.seed(seed)
        model = DigitsViT(ViTConfig.from_dict(read_teacher_metadata()["config"]))
        model.eval()
        return model

    return make
