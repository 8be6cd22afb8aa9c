"""Predicted latency: the device profile's kernel-level predictor instead of a run on the device.

Paddle Lite's ``opt`` still runs (on this host, through the Lite worker) for every target: once in protobuf
mode, to get the optimized kernel list the predictor reads, and once to write the deployable ``.nb``. The
model is never run; the result says ``source="predicted"`` and whether the profile's predictor was
calibrated on the device or only seeded from public figures.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from devicefit.device_profiles._predictor import Prediction, predict_latency
from devicefit.device_profiles._profile import DeviceProfile
from devicefit.device_profiles._shapes import Tensor, infer_shapes
from devicefit.evaluators._kernels import read_kernel_program
from devicefit.evaluators._latency import LatencyEvaluator
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.evaluators._types import LatencyResult
from devicefit.spaces._export import Artifact

#: ``LatencyResult.statistic`` of predicted figures.
PREDICTOR_STATISTIC = "kernel-linear predictor"


def input_tensors(sample_inputs: Sequence[Path]) -> list[Tensor]:
    """Shapes and dtypes of the model's inputs, read from their ``.npy`` headers (data is not loaded).

    Raises:
        ValueError: An input is not a batch of one.
    """
    tensors = []
    for path in sample_inputs:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if not array.shape or array.shape[0] != 1:
            raise ValueError(f"{path}: latency is predicted for a batch of one, this input has shape {array.shape}")
        tensors.append(Tensor(tuple(int(d) for d in array.shape), str(array.dtype)))
    return tensors


def predict_program(model_file: Path, params_file: Path, inputs: Sequence[Tensor], profile: DeviceProfile) -> Prediction:
    """Predict the latency of an optimized program (``opt`` protobuf output) on ``profile``'s device.

    Raises:
        ValueError: The profile has no predictor.
        ShapeInferenceError: A kernel of the program cannot be shaped or costed.
        UncoveredKernelError: The predictor has no coefficients for some kernels.
    """
    if profile.predictor is None:
        raise ValueError(f"{profile.id} has no predictor: its latency can only be measured")
    program = infer_shapes(read_kernel_program(model_file, params_file), inputs)
    return predict_latency(program, profile.predictor, device_id=profile.id)


class PredictedLatency(LatencyEvaluator):
    """Latency from the device profile's predictor (see :mod:`devicefit.device_profiles._predictor`).

    Contract (in addition to :class:`LatencyEvaluator`'s): the figure is ``source="predicted"``, with
    ``calibrated`` from the profile's provenance and ``predictor`` naming the profile version and its
    measured error; the ``.nb`` is written too (``<artifact dir>/<device id>.nb``), for deployment and size.

    Args:
        worker: The Lite worker client that converts.
    """

    def __init__(self, worker: LiteWorker) -> None:
        self.worker = worker

    def latency(self, artifact: Artifact, profile: DeviceProfile, sample_inputs: Sequence[Path]) -> LatencyResult:
        if profile.predictor is None:
            raise ValueError(f"{profile.id} has no predictor: its latency can only be measured")
        started = time.perf_counter()
        program_dir = artifact.directory / f"{profile.id}.program"
        converted = self.worker.convert(
            artifact.model_file, artifact.params_file, profile.places, program_dir, model_type="protobuf"
        )
        prediction = predict_program(converted.paths[0], converted.paths[1], input_tensors(sample_inputs), profile)
        nb_file = self.worker.convert(
            artifact.model_file, artifact.params_file, profile.places, artifact.directory / profile.id
        ).nb_file
        return LatencyResult(
            device_id=profile.id,
            latency_ms=prediction.latency_ms,
            source="predicted",
            statistic=PREDICTOR_STATISTIC,
            p10_ms=None,
            p90_ms=None,
            cv=None,
            repeats=0,
            threads=profile.threads,
            seconds=time.perf_counter() - started,
            model_bytes=nb_file.stat().st_size,
            calibrated=profile.calibrated,
            predictor=profile.describe_predictor(),
        )


class LatencyByDevice(LatencyEvaluator):
    """Routes each device to its own evaluator (measured for some devices, predicted for others).

    Args:
        evaluators: Device id -> the evaluator that gives that device's latency.
    """

    def __init__(self, evaluators: Mapping[str, LatencyEvaluator]) -> None:
        self.evaluators = dict(evaluators)

    def latency(self, artifact: Artifact, profile: DeviceProfile, sample_inputs: Sequence[Path]) -> LatencyResult:
        evaluator = self.evaluators.get(profile.id)
        if evaluator is None:
            raise ValueError(f"no latency evaluator was set up for {profile.id}")
        return evaluator.latency(artifact, profile, sample_inputs)
