"""Bit-width and deployment: every family exports and converts with the real Paddle Lite, for x86 and arm;
int8 through PaddleSlim's post-training quantization, fp16 and weight-only through Paddle Lite's converter.

The Lite worker runs in the Paddle Lite interpreter of ``make setup``; without it these tests fail.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from devicefit.evaluators._lite_client import LiteWorker
from devicefit.spaces import Candidate, TransformerSpace, lite_deployment_problem, program_logits
from devicefit.spaces._precision import deploy_candidate, fake_quantize_per_channel

FAMILY_NAMES = ("transformer-encoder-pre", "transformer-encoder-post", "vit-cls", "vit-mean", "bert")
#: Logits of the x86 ``.nb`` against the exported program (Paddle Lite and Paddle compute in fp32).
LITE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def lite():
    with LiteWorker() as worker:
        yield worker


def _input_spec(paddle, name: str, inputs: tuple[np.ndarray, ...]) -> list:
    array = inputs[0]
    return [paddle.static.InputSpec([None, *array.shape[1:]], str(array.dtype), "x")]


def _optimized_ops(lite, artifact_dir: Path, places: str, out: Path, **options) -> tuple[Counter, Counter]:
    """Op types of the program Paddle Lite optimizes for ``places``, and those it marks int8."""
    from paddle.base.proto import framework_pb2

    result = lite.convert(artifact_dir / "model.pdmodel", artifact_dir / "model.pdiparams", places, out, model_type="protobuf", **options)
    program = framework_pb2.ProgramDesc()
    program.ParseFromString(result.program_file.read_bytes())
    ops = program.blocks[0].ops
    int8 = Counter(op.type for op in ops if any(a.name == "enable_int8" and a.b for a in op.attrs))
    return Counter(op.type for op in ops), int8


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_every_family_exports_and_converts_for_x86_and_arm_fp32_and_int8(paddle, family_factory, lite, tmp_path, name) -> None:
    model, (inputs, labels) = family_factory(name)
    space = TransformerSpace(model, inputs, labels)
    candidate = Candidate((0, space.layout.num_layers - 1), (2, 3), (16, 24), hidden=24)
    student = space.materialize(candidate)
    spec = _input_spec(paddle, name, inputs)
    fp32 = deploy_candidate(student, candidate, spec, tmp_path / "fp32", calibration_inputs=inputs)
    with paddle.no_grad():
        eager = student(*[paddle.to_tensor(x) for x in inputs]).numpy()
    np.testing.assert_allclose(program_logits(fp32.directory, inputs), eager, atol=1e-5, rtol=0)
    for places in ("x86", "arm"):
        nb = lite.convert(fp32.model_file, fp32.params_file, places, tmp_path / places).nb_file
        assert nb.stat().st_size > 0
    np.save(tmp_path / "input.npy", inputs[0][:4])
    lite.run(tmp_path / "x86.nb", [tmp_path / "input.npy"], [tmp_path / "output.npy"])
    np.testing.assert_allclose(np.load(tmp_path / "output.npy"), eager[:4], atol=LITE_TOLERANCE, rtol=0)

    int8_candidate = Candidate(candidate.layers, candidate.heads, candidate.ffn, "int8", hidden=24, calibration="abs_max")
    int8 = deploy_candidate(student, int8_candidate, spec, tmp_path / "int8", calibration_inputs=inputs)
    assert int8.precision == "int8" and int8.quantization is not None and int8.quantization.quantized_weights >= 12
    _, marked = _optimized_ops(lite, int8.directory, "arm", tmp_path / "int8_arm")
    assert marked["fc"] >= 12, marked  # every linear layer of the blocks runs an int8 kernel on ARM


@pytest.mark.parametrize("algo", ["hist", "mse"])  # abs_max and avg run above and below; KL takes minutes
def test_each_calibration_algorithm_quantizes(paddle, family_factory, tmp_path, algo) -> None:
    model, (inputs, labels) = family_factory("bert")
    space = TransformerSpace(model, inputs, labels)
    full = space.full_candidate()
    spec = _input_spec(paddle, "bert", inputs)
    reference = program_logits(space.deploy(model, full, spec, tmp_path / "fp32").directory, inputs)
    artifact = space.deploy(model, Candidate(full.layers, full.heads, full.ffn, "int8", calibration=algo), spec, tmp_path / algo)
    assert artifact.quantization is not None and artifact.quantization.algo == algo and artifact.fidelity_tag == f"ptq-{algo}"
    difference = np.abs(program_logits(artifact.scoring_dir, inputs) - reference).max()
    assert 1e-4 < difference < 0.5


@pytest.fixture(scope="module")
def digits_vit():
    from devicefit.examples.digits_vit.task import build_task

    return build_task()


@pytest.fixture(scope="module")
def vit_space(digits_vit):
    calibration = digits_vit.data.train.take(slice(0, 256))
    return TransformerSpace(digits_vit.teacher, calibration.inputs, calibration.labels)


#: int8 students of the shipped examples stay within this many points of fp32 validation accuracy.
INT8_ACCURACY_TOLERANCE = 0.02


def _val_accuracy(directory: Path, task) -> float:
    logits = program_logits(directory, task.data.val.inputs)
    return float(np.mean(np.argmax(logits, axis=1) == task.data.val.labels))


@pytest.mark.parametrize("example", ["digits-vit", "digits-bert"])
def test_int8_students_stay_within_tolerance_of_fp32_on_the_examples(example, tmp_path) -> None:
    from devicefit.examples import load_example

    task = load_example(example)
    calibration = task.data.train.take(slice(0, 256))
    space = TransformerSpace(task.teacher, calibration.inputs, calibration.labels)
    candidate = space.full_candidate()  # a cut student would need fine-tuning first to mean anything here
    student = space.materialize(candidate)
    fp32 = space.deploy(student, candidate, task.input_spec, tmp_path / "fp32")
    quantized = Candidate(candidate.layers, candidate.heads, candidate.ffn, "int8", calibration="avg")
    int8 = space.deploy(student, quantized, task.input_spec, tmp_path / "int8")
    fp32_logits = program_logits(fp32.directory, task.data.val.inputs)
    int8_logits = program_logits(int8.scoring_dir, task.data.val.inputs)
    assert np.abs(int8_logits - fp32_logits).max() > 1e-3  # the simulation really quantizes
    fp32_accuracy, int8_accuracy = _val_accuracy(fp32.directory, task), _val_accuracy(int8.scoring_dir, task)
    assert fp32_accuracy > 0.9
    assert abs(int8_accuracy - fp32_accuracy) <= INT8_ACCURACY_TOLERANCE, (fp32_accuracy, int8_accuracy)
    assert (tmp_path / "int8" / "fp32" / "model.pdmodel").is_file()  # the fp32 program it was made from


def test_mixed_precision_keeps_the_chosen_blocks_in_fp32_on_arm(vit_space, digits_vit, lite, tmp_path) -> None:
    student = vit_space.materialize(vit_space.full_candidate())
    full = vit_space.full_candidate()
    all_int8 = Candidate(full.layers, full.heads, full.ffn, "int8", calibration="abs_max")
    mixed = Candidate(full.layers, full.heads, full.ffn, "int8", calibration="abs_max", fp32_layers=(0, 2))
    counts = {}
    for label, candidate in (("all", all_int8), ("mixed", mixed)):
        artifact = vit_space.deploy(student, candidate, digits_vit.input_spec, tmp_path / label)
        assert artifact.quantization is not None
        counts[label] = (artifact.quantization, _optimized_ops(lite, artifact.directory, "arm", tmp_path / f"{label}_arm")[1])
    (all_info, all_marked), (mixed_info, mixed_marked) = counts["all"], counts["mixed"]
    assert (all_info.quantized_weights, all_info.fp32_weights) == (25, 0)  # 4 blocks x 6 projections + head
    assert (mixed_info.quantized_weights, mixed_info.fp32_weights) == (13, 12)
    assert all_marked["fc"] == 25 and mixed_marked["fc"] == 13


def test_weight_only_quantization_rounds_each_output_channel_as_paddle_lite_does() -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 16)).astype(np.float32)
    weight[:, 3] = 0.0  # an all-zero channel stays zero (no division by zero)
    for bits in (8, 16):
        simulated = fake_quantize_per_channel(weight, bits, axis=1)
        levels = (1 << (bits - 1)) - 1
        scale = np.abs(weight).max(axis=0) / levels
        assert np.all(np.abs(simulated - weight) <= scale / 2 + 1e-7)
        safe = np.where(scale > 0, scale, 1.0)
        codes = simulated / safe
        np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)  # whole numbers of steps
        assert np.all(simulated[:, 3] == 0.0)
    # Halves round away from zero, like C's round (numpy's round would give 2 and -2).
    assert list(fake_quantize_per_channel(np.array([[2.5], [-2.5], [127.0]], np.float32), 8, axis=1)[:, 0]) == [3.0, -3.0, 127.0]


def test_weight_only_and_fp16_deployments_convert_and_simulate(vit_space, digits_vit, lite, tmp_path) -> None:
    student = vit_space.materialize(vit_space.full_candidate())
    full = vit_space.full_candidate()
    plain = vit_space.deploy(student, full, digits_vit.input_spec, tmp_path / "plain")
    plain_nb = lite.convert(plain.model_file, plain.params_file, "arm", tmp_path / "plain_arm").nb_file
    reference = program_logits(plain.directory, digits_vit.data.val.inputs)
    sizes = {}
    for bits in (8, 16):
        artifact = vit_space.deploy(student, Candidate(full.layers, full.heads, full.ffn, weight_only_bits=bits), digits_vit.input_spec, tmp_path / f"wo{bits}")
        assert artifact.lite_quant_type == f"QUANT_INT{bits}" and artifact.fidelity_tag == f"wo{bits}-sim"
        assert artifact.simulation_dir == tmp_path / f"wo{bits}" / "simulated"
        simulated = program_logits(artifact.scoring_dir, digits_vit.data.val.inputs)
        assert 0 < np.abs(simulated - reference).max() < (0.5 if bits == 8 else 0.01)
        nb = lite.convert(artifact.model_file, artifact.params_file, "arm", tmp_path / f"wo{bits}_arm", quant_type=artifact.lite_quant_type).nb_file
        sizes[bits] = nb.stat().st_size
    assert sizes[8] < 0.5 * plain_nb.stat().st_size and sizes[8] < sizes[16] < plain_nb.stat().st_size

    fp16 = vit_space.deploy(student, Candidate(full.layers, full.heads, full.ffn, "fp16"), digits_vit.input_spec, tmp_path / "fp16")
    assert fp16.enable_fp16 and fp16.fidelity_tag == "fp16-sim" and fp16.content_hash != plain.content_hash
    simulated = program_logits(fp16.scoring_dir, digits_vit.data.val.inputs)
    assert 0 < np.abs(simulated - reference).max() < 0.1
    assert np.mean(simulated.argmax(1) == reference.argmax(1)) >= 0.99
    nb = lite.convert(fp16.model_file, fp16.params_file, "arm", tmp_path / "fp16_arm", enable_fp16=True).nb_file
    assert nb.stat().st_size > 0


def test_paddle_lite_facts_reject_what_x86_cannot_deploy() -> None:
    base = Candidate((0,), (1,), (8,))
    assert lite_deployment_problem(base, "x86") is None
    assert "NaN" in lite_deployment_problem(Candidate((0,), (1,), (8,), "int8", calibration="avg"), "x86")
    assert "NaN" in lite_deployment_problem(Candidate((0,), (1,), (8,), weight_only_bits=16), "x86")
    assert "fp16" in lite_deployment_problem(Candidate((0,), (1,), (8,), "fp16"), "x86")
    assert lite_deployment_problem(Candidate((0,), (1,), (8,), "int8", calibration="avg"), "arm") is None
    assert lite_deployment_problem(Candidate((0,), (1,), (8,), weight_only_bits=8), "opencl,arm") is None
