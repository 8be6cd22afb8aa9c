"""The Paddle Lite worker and its client, through the real Paddle Lite interpreter.

The interpreter comes from ``find_lite_python()`` (``DEVICEFIT_LITE_PYTHON``, or ``.lite/bin/python``
written by ``make setup``). Without it these tests fail with its message: they are never skipped.
Failure handling (hangs, stray prints, a corrupted channel) is also tested with
``tests/fakes/fake_lite_worker.py``, which serves the real protocol code with misbehaving ops.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devicefit.evaluators import _lite_client
from devicefit.evaluators._lite_client import (
    InputSpec,
    LiteOpError,
    LiteProtocolError,
    LiteUnavailableError,
    LiteWorker,
    LiteWorkerCrashed,
    LiteWorkerError,
    LiteWorkerTimeout,
    find_lite_python,
)
from devicefit.spaces._paddle import import_paddle

FAKE_WORKER = Path(__file__).resolve().parents[1] / "fakes" / "fake_lite_worker.py"
SEQ, D_MODEL, N_CLASSES = 8, 32, 10


def _lite_python() -> list[str]:
    try:
        return find_lite_python()
    except LiteUnavailableError as exc:
        message = str(exc)
    pytest.fail(f"the Paddle Lite interpreter is required for these tests: {message}", pytrace=False)


@dataclass(frozen=True)
class TinyModel:
    model_file: Path
    params_file: Path
    input_npy: Path
    expected: np.ndarray[Any, np.dtype[np.float32]]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A 2-layer Transformer encoder (d=32, seq 8) with a Linear head, exported for Paddle Lite."""
    paddle = import_paddle()

    class Tiny(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            layer = paddle.nn.TransformerEncoderLayer(D_MODEL, 4, 64, dropout=0.0)
            self.encoder = paddle.nn.TransformerEncoder(layer, 2)
            self.head = paddle.nn.Linear(D_MODEL, N_CLASSES)

        def forward(self, x):  # dy2static needs the first parameter named self
            return self.head(self.encoder(x))

    paddle.seed(0)
    model = Tiny()
    model.eval()
    x = np.random.default_rng(0).standard_normal((1, SEQ, D_MODEL)).astype("float32")
    expected = model(paddle.to_tensor(x)).numpy()
    directory = tmp_path_factory.mktemp("tiny")
    prefix = directory / "tiny"
    spec = [paddle.static.InputSpec([1, SEQ, D_MODEL], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), str(prefix))
    np.save(directory / "x.npy", x)
    return TinyModel(
        model_file=directory / "tiny.pdmodel",
        params_file=directory / "tiny.pdiparams",
        input_npy=directory / "x.npy",
        expected=expected,
    )


@pytest.fixture(scope="session")
def worker() -> Iterator[LiteWorker]:
    with LiteWorker(_lite_python(), timeout_seconds=120) as client:
        yield client


@pytest.fixture(scope="session")
def x86_nb(worker: LiteWorker, tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nb") / "tiny_x86"
    return worker.convert(tiny_model.model_file, tiny_model.params_file, "x86", out).nb_file


def _fake(timeout_seconds: float = 10.0) -> LiteWorker:
    return LiteWorker([sys.executable], worker_script=FAKE_WORKER, timeout_seconds=timeout_seconds)


def _gone(pid: int) -> bool:
    """True when ``pid`` is neither running nor a zombie (it was reaped)."""
    return not Path(f"/proc/{pid}").exists()


def _wait_for_tail(client: LiteWorker, text: str, timeout_seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if any(text in line for line in client.stderr_tail()):
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------------------------------
# finding the interpreter


def test_lite_interpreter_is_available() -> None:
    argv = _lite_python()
    assert Path(argv[0]).is_file()


def test_find_lite_python_reports_a_bad_env_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEVICEFIT_LITE_PYTHON", str(tmp_path / "nope"))
    with pytest.raises(LiteUnavailableError, match="DEVICEFIT_LITE_PYTHON"):
        find_lite_python()


def test_find_lite_python_without_setup_says_make_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DEVICEFIT_LITE_PYTHON", raising=False)
    monkeypatch.setattr(_lite_client, "repo_root", lambda: tmp_path)
    with pytest.raises(LiteUnavailableError, match=r"make setup.*DEVICEFIT_LITE_PYTHON"):
        find_lite_python()
    wrapper = tmp_path / ".lite" / "bin" / "python"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text("#!/bin/sh\nexec true\n")
    wrapper.chmod(0o755)
    assert find_lite_python() == [str(wrapper)]


def test_an_interpreter_without_paddlelite_is_unavailable() -> None:
    client = LiteWorker([sys.executable], timeout_seconds=30)  # CPython 3.11 has no paddlelite
    with pytest.raises(LiteUnavailableError, match="did not start"):
        client.hello()
    assert client.pid is None
    client.close()


# --------------------------------------------------------------------------------------------------
# the real worker


def test_hello(worker: LiteWorker) -> None:
    hello = worker.hello()
    assert hello.pid != os.getpid()
    assert hello.python_version.startswith(("3.9.", "3.10."))
    assert hello.paddlelite_version
    assert hello.opt_version


def test_convert_naive_buffer_for_x86_and_arm(worker: LiteWorker, tiny_model: TinyModel, tmp_path: Path) -> None:
    for places in ("x86", "arm"):
        result = worker.convert(tiny_model.model_file, tiny_model.params_file, places, tmp_path / places)
        assert result.paths == (tmp_path / f"{places}.nb",)
        assert result.nb_file.is_file()
        assert result.sizes_bytes == (result.nb_file.stat().st_size,)
        assert result.sizes_bytes[0] > 0
        assert result.seconds > 0
        assert "successfully" in result.log


def test_convert_protobuf_writes_the_optimized_program(
    worker: LiteWorker, tiny_model: TinyModel, tmp_path: Path
) -> None:
    result = worker.convert(
        tiny_model.model_file, tiny_model.params_file, "arm", tmp_path / "arm_pb", model_type="protobuf"
    )
    assert result.paths == (tmp_path / "arm_pb" / "model", tmp_path / "arm_pb" / "params")
    assert all(p.is_file() and p.stat().st_size > 0 for p in result.paths)
    assert result.program_file == result.paths[0]
    import_paddle()
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc.FromString(result.program_file.read_bytes())
    op_types = {op.type for block in program.blocks for op in block.ops}
    assert {"softmax", "layer_norm"} <= op_types
    assert "fc" in op_types  # the ARM fusion passes ran: Linear layers became fc kernels


def test_convert_options_are_accepted(worker: LiteWorker, tiny_model: TinyModel, tmp_path: Path) -> None:
    plain = worker.convert(tiny_model.model_file, tiny_model.params_file, "arm", tmp_path / "plain")
    int8 = worker.convert(
        tiny_model.model_file, tiny_model.params_file, "arm", tmp_path / "int8", quant_type="QUANT_INT8"
    )
    fp16 = worker.convert(tiny_model.model_file, tiny_model.params_file, "arm", tmp_path / "fp16", enable_fp16=True)
    assert int8.total_bytes < plain.total_bytes
    assert fp16.nb_file.is_file()
    with pytest.raises(LiteOpError, match="quant_type"):  # checked in the worker: opt would abort
        worker.convert(tiny_model.model_file, tiny_model.params_file, "arm", tmp_path / "q4", quant_type="QUANT_INT4")


def test_run_on_x86_matches_paddle(worker: LiteWorker, tiny_model: TinyModel, x86_nb: Path, tmp_path: Path) -> None:
    result = worker.run(x86_nb, [tiny_model.input_npy], [tmp_path / "out.npy"])
    assert len(result.outputs) == 1
    output = result.outputs[0]
    assert output.shape == (1, SEQ, N_CLASSES)
    assert output.path == tmp_path / "out.npy"
    np.testing.assert_allclose(np.load(output.path), tiny_model.expected, rtol=0, atol=1e-4)


def test_measure_returns_raw_positive_timings(worker: LiteWorker, x86_nb: Path, tiny_model: TinyModel) -> None:
    times_ms = worker.measure(x86_nb, [InputSpec((1, SEQ, D_MODEL))], warmup=2, repeats=7)
    assert len(times_ms) == 7
    assert all(t > 0 for t in times_ms)
    detailed = worker.measure_detailed(x86_nb, [tiny_model.input_npy], warmup=1, repeats=3, blocks=2)
    assert len(detailed.times_ms) == 6
    assert detailed.block(1) == detailed.times_ms[3:]
    assert detailed.predictor_cached  # loaded once per worker
    assert detailed.peak_rss_after_bytes is not None and detailed.peak_rss_before_bytes is not None
    assert detailed.peak_rss_after_bytes >= detailed.peak_rss_before_bytes > 0


def test_supported_ops_per_target(worker: LiteWorker) -> None:
    arm = worker.supported_ops("arm")
    assert "kARM" in arm.targets
    assert arm.supports("layer_norm", "kARM") and arm.supports("softmax", "kARM")
    nnapi = worker.supported_ops("android_nnapi,arm")
    assert nnapi.supports("softmax", "android_nnapi")
    assert not nnapi.supports("layer_norm", "android_nnapi")  # falls back to the ARM CPU


def test_check_model(worker: LiteWorker, tiny_model: TinyModel) -> None:
    x86 = worker.check_model(tiny_model.model_file, tiny_model.params_file, "x86")
    assert x86.supported and x86.unsupported_ops == ()
    assert "layer_norm" in x86.model_ops
    metal = worker.check_model(tiny_model.model_file, tiny_model.params_file, "metal")
    assert not metal.supported and metal.unsupported_ops == ("layer_norm",)


# --------------------------------------------------------------------------------------------------
# failures


def test_missing_model_file_is_an_op_error_and_the_worker_lives_on(
    worker: LiteWorker, tiny_model: TinyModel, tmp_path: Path
) -> None:
    # Paddle Lite itself aborts the process on a missing file; the worker checks first.
    pid = worker.hello().pid
    with pytest.raises(LiteOpError) as caught:
        worker.convert(tmp_path / "missing.pdmodel", tiny_model.params_file, "x86", tmp_path / "out")
    assert caught.value.error_type == "FileNotFoundError"
    with pytest.raises(LiteWorkerError):
        worker.run(tmp_path / "missing.nb", [tiny_model.input_npy])
    assert worker.hello().pid == pid


def test_paddle_lite_abort_is_reported_and_the_next_request_restarts(tiny_model: TinyModel, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.nb"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with LiteWorker(_lite_python(), timeout_seconds=60) as client:
        first = client.hello().pid
        with pytest.raises(LiteWorkerCrashed) as caught:
            client.run(corrupt, [tiny_model.input_npy])
        crash = caught.value
        assert crash.exit_code in (-6, 134)  # SIGABRT, directly or reported by a shell wrapper
        assert crash.fatal_lines and crash.fatal_lines[0].startswith("[F ")
        assert "[F " in str(crash)
        assert _gone(first)  # killed and reaped: no zombie
        assert client.pid is None
        second = client.hello().pid  # transparently a fresh worker
        assert second != first
        # An abort without an "[F" line (opt rejects the places string) keeps its message in the tail.
        with pytest.raises(LiteWorkerCrashed) as caught:
            client.convert(tiny_model.model_file, tiny_model.params_file, "no_such_target", tmp_path / "x")
        assert any("no_such_target" in line for line in caught.value.stderr_tail)
        assert client.hello().pid not in (first, second)
        assert client.starts == 3


def test_native_prints_cannot_corrupt_the_protocol(worker: LiteWorker, tiny_model: TinyModel, tmp_path: Path) -> None:
    result = worker.convert(tiny_model.model_file, tiny_model.params_file, "x86", tmp_path / "loud", capture_log=False)
    assert result.log == ""
    assert _wait_for_tail(worker, "Model is successfully loaded")  # opt's stdout went to stderr
    assert worker.hello().pid


def test_stray_prints_of_every_kind_go_to_stderr() -> None:
    with _fake(timeout_seconds=10) as client:
        reply = client.request("noise")
        assert reply["noisy"] is True
        assert client.request("noise")["id"] == 3  # the start-up hello was 1, the first noise 2
        for text in ("python print", "os.write", "not json at all", "native printf garbage", "noise on stderr"):
            assert _wait_for_tail(client, text), text


def test_a_hang_times_out_within_the_bound_and_the_next_request_works() -> None:
    with _fake(timeout_seconds=10) as client:
        hung = client.hello().pid
        started = time.monotonic()
        with pytest.raises(LiteWorkerTimeout) as caught:
            client.request("sleep", timeout_seconds=1.0, seconds=3600)
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 1.0 + 5.0
        assert caught.value.timeout_seconds == 1.0
        assert _gone(hung)
        assert client.hello().pid != hung


def test_a_corrupted_channel_is_a_protocol_error_then_a_restart() -> None:
    with _fake(timeout_seconds=10) as client:
        first = client.hello().pid
        with pytest.raises(LiteProtocolError):
            client.request("corrupt")
        assert _gone(first)
        assert client.hello().pid != first


def test_an_abort_is_a_crash_with_its_fatal_line() -> None:
    with _fake(timeout_seconds=10) as client:
        with pytest.raises(LiteWorkerCrashed) as caught:
            client.request("abort")
        assert caught.value.exit_code == -6
        assert caught.value.fatal_lines[0].endswith("fake fatal error")


def test_close_leaves_no_process_and_no_thread() -> None:
    client = _fake(timeout_seconds=10)
    pid = client.hello().pid
    assert any(t.name.startswith("lite-worker-stderr") for t in threading.enumerate())
    client.close()
    client.close()  # idempotent
    assert _gone(pid)
    assert client.pid is None
    assert not any(t.name == f"lite-worker-stderr-{pid}" for t in threading.enumerate())
    assert client.hello().pid != pid  # usable again: starts a new worker
    client.close()


def test_a_worker_that_died_while_idle_is_replaced_silently() -> None:
    with _fake() as client:
        first = client.hello().pid
        os.kill(first, signal.SIGKILL)  # the worker this test started
        deadline = time.monotonic() + 5.0
        while Path(f"/proc/{first}/stat").read_text().split(")")[-1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the killed worker did not die"
            time.sleep(0.01)
        assert client.hello().pid != first
        assert _gone(first)


def test_an_abandoned_client_does_not_leave_its_worker_running() -> None:
    client = _fake()
    pid = client.hello().pid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # its pipes were not closed: that is the point
        del client
        gc.collect()
    deadline = time.monotonic() + 5.0
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]:
        assert time.monotonic() < deadline, "the abandoned worker is still running"
        time.sleep(0.01)
