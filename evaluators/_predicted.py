"""Predicted latency: the device profile's kernel-level predictor instead of a run on the device.

Paddle Lite's ``opt`` still runs (on this host, through the Lite worker) for every target, at the
artifact's precision (:func:`~devicefit.evaluators._latency.convert_artifact`, as for a measurement): once in
protobuf mode, for the optimized kernel list the predictor reads, and once to write the deployable ``.nb``.
The model is never run. The result says ``source="predicted"``, whether the profile's predictor was
calibrated on the device or only seeded from public figures, and how the figure splits over kernel types.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from devicefit.device_profiles._predictor import Prediction, predict_latency
from devicefit.device_profiles._profile import DeviceProfile
from devicefit.device_profiles._shapes import Tensor, infer_shapes
from devicefit.device_profiles._program import read_kernel_program
from devicefit.evaluators._latency import LatencyEvaluator, convert_artifact
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.evaluators._nnadapter import nnadapter_devices, parse_partition
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


def describe_prediction(profile: DeviceProfile, prediction: Prediction) -> str:
    """``LatencyResult.predictor``: the profile's predictor line, and the kernels priced by a stand-in, if any."""
    line = profile.describe_predictor()
    stand_ins = prediction.describe_stand_ins()
    return f"{line}; {stand_ins}" if stand_ins else line


class PredictedLatency(LatencyEvaluator):
    """Latency from the device profile's predictor (see :mod:`devicefit.device_profiles._predictor`).

    Contract (in addition to :class:`LatencyEvaluator`'s):
        - The figure is ``source="predicted"``, ``repeats=0``, with ``calibrated`` from the profile's provenance
          and ``predictor`` naming the profile version, its measured error, and the kernels it priced by a
          stand-in (``_predictor.STAND_IN_OPS``).
        - ``kernels_ms`` (per cost key), ``overhead_ms`` and ``subgraphs_ms`` add up to ``latency_ms``.
        - The artifact is converted at its own precision (fp16 kernels, int8 program, weight-only bits), and the
          ``.nb`` is written too (``<artifact dir>/<device id>.nb``), for deployment and size; for NNAdapter
          places, the op partition that ``opt`` printed is recorded as for a measurement.
        - Memory is not predicted (``memory_peak_bytes`` is None), so no memory limit is checked.

    Args:
        worker: The Lite worker client that converts.
    """

    def __init__(self, worker: LiteWorker) -> None:
        self.worker = worker

    def latency(self, artifact: Artifact, profile: DeviceProfile, sample_inputs: Sequence[Path]) -> LatencyResult:
        if profile.predictor is None:
            raise ValueError(f"{profile.id} has no predictor: its latency can only be measured")
        started = time.perf_counter()
        program = convert_artifact(
            self.worker, artifact, profile, artifact.directory / f"{profile.id}.program", model_type="protobuf"
        )
        prediction = predict_program(program.paths[0], program.paths[1], input_tensors(sample_inputs), profile)
        conversion = convert_artifact(self.worker, artifact, profile, artifact.directory / profile.id)
        partition = parse_partition(conversion.log) if nnadapter_devices(profile.places) else None
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
            model_bytes=conversion.nb_file.stat().st_size,
            memory_limit_bytes=profile.memory_limit_bytes,
            places=profile.places,
            nnadapter_subgraphs=None if partition is None else partition.subgraphs,
            nnadapter_ops=None if partition is None else dict(partition.accelerator_ops),
            cpu_fallback_ops=None if partition is None else dict(partition.cpu_ops),
            calibrated=profile.calibrated,
            predictor=describe_prediction(profile, prediction),
            kernels_ms=dict(prediction.kernels_ms),
            overhead_ms=prediction.overhead_ms,
            subgraphs_ms=prediction.subgraphs_ms,
        )


class LatencyByDevice(LatencyEvaluator):
    """Routes each device to its own evaluator (measured for some devices, predicted for others).

    Args:
        evaluators: Device id -> the evaluator that gives that device's latency.
    """

    def __init__(self, evaluators: Mapping[str, LatencyEvaluator]) -> None:
        self.evaluators = dict(evaluators)

    def evaluator_for(self, profile: DeviceProfile) -> LatencyEvaluator:
        """The evaluator of ``profile``'s device.

        Raises:
            ValueError: None was set up for it.
        """
        evaluator = self.evaluators.get(profile.id)
        if evaluator is None:
            raise ValueError(f"no latency evaluator was set up for {profile.id}")
        return evaluator

    def latency(self, artifact: Artifact, profile: DeviceProfile, sample_inputs: Sequence[Path]) -> LatencyResult:
        return self.evaluator_for(profile).latency(artifact, profile, sample_inputs)

    def close(self) -> None:
        """Close every evaluator once (several devices may share one)."""
        closed: list[LatencyEvaluator] = []
        for evaluator in self.evaluators.values():
            if not any(evaluator is done for done in closed):
                evaluator.close()
                closed.append(evaluator)
