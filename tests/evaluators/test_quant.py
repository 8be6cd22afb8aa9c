"""The int8 rung: PTQ baseline, QAT with distillation, the exported int8 program, and Paddle Lite's view of it.

Runs once on a small digits student (module-scoped), then checks what it produced.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from devicefit.evaluators._accuracy import predict_logits
from devicefit.evaluators._distill import DistillationSettings
from devicefit.evaluators._final import QuantAwareEvaluator
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.evaluators._quant import (
    QuantizationSettings,
    is_quantized,
    post_training_quantize,
    predict_exported_logits,
)
from devicefit.spaces import Candidate


def _program_ops(path: Path) -> collections.Counter[str]:
    from devicefit.spaces._paddle import import_paddle

    import_paddle()
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(path.read_bytes())
    return collections.Counter(op.type for block in program.blocks for op in block.ops)


@pytest.fixture(scope="module")
def qat_run(digits, tmp_path_factory):
    candidate = Candidate(digits.space.importance.layers_for_depth(2), (2, 4), (64, 128))
    evaluator = QuantAwareEvaluator(
        digits.teacher,
        digits.data,
        DistillationSettings(epochs=2, learning_rate=2e-3),
        qat_settings=DistillationSettings(epochs=1, learning_rate=1e-4),
    )
    student = digits.space.materialize(candidate)
    result = evaluator.evaluate(student, teacher_layers=candidate.layers)
    artifact = evaluator.export(student, digits.input_spec, tmp_path_factory.mktemp("qat") / "model")
    return evaluator, student, result, artifact


def test_qat_reports_the_float_ptq_and_qat_figures(qat_run) -> None:
    evaluator, student, result, _ = qat_run
    details = result.details
    assert is_quantized(student) and not student.training
    assert result.split == "val" and result.fidelity == evaluator.fidelity
    assert 0.5 < details["float_accuracy"] <= 1.0 and 0.5 < details["ptq_accuracy"] <= 1.0
    assert details["qat_gain_over_ptq"] == pytest.approx(result.accuracy - details["ptq_accuracy"])
    assert details["qat_distillation"]["steps"] == 5
    test = evaluator.test(student)
    assert test.split == "test"
    assert test.details["qat_gain_over_ptq"] == pytest.approx(test.accuracy - test.details["ptq_accuracy"])


def test_the_exported_int8_program_is_the_trained_model(digits, qat_run) -> None:
    _, student, _, artifact = qat_run
    ops = _program_ops(artifact.model_file)
    assert ops["quantize_linear"] >= 10 and ops["dequantize_linear"] >= 10
    assert ops["dropout"] == 0  # identity at inference; Paddle Lite would keep it as an ARM kernel
    exported = predict_exported_logits(artifact, digits.data.val)
    simulated = predict_logits(student, digits.data.val)
    assert np.mean(exported.argmax(1) == simulated.argmax(1)) >= 0.95


def test_paddle_lite_converts_it_to_int8_arm_kernels(qat_run, tmp_path) -> None:
    _, _, _, artifact = qat_run
    with LiteWorker() as worker:
        converted = worker.convert(artifact.model_file, artifact.params_file, "arm", tmp_path / "opt", model_type="protobuf")
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(converted.paths[0].read_bytes())
    int8_kernels = [
        op.type
        for op in program.blocks[0].ops
        if any(attr.name == "enable_int8" and attr.b for attr in op.attrs)
    ]
    assert int8_kernels.count("fc") >= 6


def test_ptq_leaves_the_model_alone_and_is_deterministic(digits) -> None:
    student = digits.space.materialize(Candidate((3,), (4,), (128,)))
    weights = [p.numpy().copy() for p in student.parameters()]
    settings = QuantizationSettings(calibration_batches=2)
    first = predict_logits(post_training_quantize(student, digits.data.train, settings), digits.data.val)
    second = predict_logits(post_training_quantize(student, digits.data.train, settings), digits.data.val)
    np.testing.assert_array_equal(first, second)
    assert not is_quantized(student)
    for parameter, weight in zip(student.parameters(), weights):
        np.testing.assert_array_equal(parameter.numpy(), weight)
    # Quantization moves the logits, but not far on this model.
    plain = predict_logits(student, digits.data.val)
    assert 0 < np.abs(first - plain).max() and np.mean(first.argmax(1) == plain.argmax(1)) > 0.9


def test_quantizing_twice_is_refused(qat_run) -> None:
    evaluator, student, _, _ = qat_run
    with pytest.raises(ValueError, match="already quantized"):
        evaluator.evaluate(student)
