"""MeasuredLatency.convert asks Paddle Lite's converter for what the artifact's precision needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from devicefit.device_profiles._profile import DeviceProfile, Reach
from devicefit.evaluators._latency import MeasuredLatency
from devicefit.evaluators._lite_client import ConvertResult
from devicefit.spaces import Artifact

PHONE = DeviceProfile("phone", "A phone", "test", "cpu", "arm", Reach("none"), precisions=("fp32", "fp16", "int8"))
HOST = DeviceProfile("host", "x86", "test", "cpu", "x86", Reach("local"))


class RecordingWorker:
    """Stands in for the Lite worker: records each conversion's arguments and writes a dummy .nb."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def convert(self, model_file, params_file, valid_places, out_prefix, **options) -> ConvertResult:
        self.calls.append({"places": valid_places, **options})
        nb = Path(f"{out_prefix}.nb")
        nb.write_bytes(b"nb")
        return ConvertResult("naive_buffer", valid_places, (nb,), (2,), 0.0, "")


def _artifact(tmp_path: Path, **deployment) -> Artifact:
    (tmp_path / "model.pdmodel").write_bytes(b"program")
    (tmp_path / "model.pdiparams").write_bytes(b"weights")
    return Artifact.from_directory(tmp_path, **deployment)


@pytest.mark.parametrize(
    ("deployment", "expected"),
    [
        ({}, {"enable_fp16": False, "quant_type": None}),
        ({"precision": "fp16"}, {"enable_fp16": True, "quant_type": None}),
        ({"precision": "int8"}, {"enable_fp16": False, "quant_type": None}),  # the program is already quantized
        ({"weight_only_bits": 8}, {"enable_fp16": False, "quant_type": "QUANT_INT8"}),
        ({"weight_only_bits": 16}, {"enable_fp16": False, "quant_type": "QUANT_INT16"}),
    ],
)
def test_the_artifacts_precision_reaches_the_converter(tmp_path, deployment, expected) -> None:
    worker = RecordingWorker()
    nb = MeasuredLatency(worker, runners={}).convert(_artifact(tmp_path, **deployment), PHONE)  # type: ignore[arg-type]
    assert nb == tmp_path / "phone.nb"
    assert worker.calls == [{"places": "arm", "model_type": "naive_buffer", **expected}]  # the .nb the device runs


def test_a_precision_the_profile_lacks_is_refused_before_converting(tmp_path) -> None:
    worker = RecordingWorker()
    with pytest.raises(ValueError, match="host has no int8 kernels"):
        MeasuredLatency(worker, runners={}).convert(_artifact(tmp_path, precision="int8"), HOST)  # type: ignore[arg-type]
    assert worker.calls == []


def test_the_deployment_is_part_of_the_content_hash(tmp_path) -> None:
    plain, fp16 = _artifact(tmp_path), _artifact(tmp_path, precision="fp16")
    assert plain.content_hash != fp16.content_hash != _artifact(tmp_path, weight_only_bits=8).content_hash
    assert plain.content_hash == _artifact(tmp_path).content_hash
