"""The space of an inference program without its code: precision and sparsity open, the structure closed.

The program is the shipped digits-ViT teacher saved by plain ``paddle.jit.save`` (tests/support/programs.py).
Exports are checked on the files: zeros in the weights, quantization ops in the program, int8 kernels in
Paddle Lite's ARM program (the Lite worker of ``make setup`` runs; without it the last test fails).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest

from devicefit.evaluators._lite_client import LiteWorker
from devicefit.spaces import BoundsError, Candidate, SpaceBounds, program_logits
from devicefit.spaces._program_space import (
    PROGRAM_SPARSITIES,
    ProgramSpace,
    describe_dimensions,
    load_program_layer,
    matmul_weights,
    program_bounds,
    program_dimensions,
)
from tests.support.programs import export_digits_program

ALL_PRECISIONS = SpaceBounds(precisions=("fp32", "fp16", "int8"))


@pytest.fixture(scope="module")
def digits_program(paddle, tmp_path_factory) -> tuple[Path, dict]:
    model_file, npz = export_digits_program(tmp_path_factory.mktemp("program"))
    return model_file, dict(np.load(npz))


def _space(digits_program, bounds: SpaceBounds = ALL_PRECISIONS, given: tuple[str, ...] = ()) -> ProgramSpace:
    model_file, arrays = digits_program
    return ProgramSpace(model_file, (arrays["train_inputs"][:64],), bounds=program_bounds(bounds, given))


def _weights(model_file: Path) -> dict[str, np.ndarray]:
    """Every persistable tensor of the program ``model_file``, by its name in the program."""
    from devicefit.spaces._program_space import original_names

    layer = load_program_layer(model_file)
    names = original_names(layer)
    return {names[p.name]: p.numpy() for p in layer.parameters()}


def _val_accuracy(directory: Path, arrays: dict) -> float:
    logits = program_logits(directory, (arrays["val_inputs"],))
    return float(np.mean(logits.argmax(axis=1) == arrays["val_labels"]))


def test_the_space_suggests_only_the_open_dimensions(digits_program) -> None:
    space = _space(digits_program)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(12):
        trial = study.ask()
        candidate = space.suggest(trial)
        assert set(trial.params) == {"sparsity", "precision"}  # one calibration: nothing else is drawn
        assert candidate.program and candidate.layers == candidate.heads == candidate.ffn == () and candidate.hidden is None
        assert candidate.sparsity in PROGRAM_SPARSITIES and (candidate.calibration == "avg") == (candidate.precision == "int8")
        assert space.suggest(optuna.trial.FixedTrial(space.params_for(candidate))) == candidate
        drawn.append(candidate)
    assert len({c.precision for c in drawn}) > 1 and len({c.sparsity for c in drawn}) > 1
    keys = {c.key() for c in drawn}
    assert len(keys) == len(set(drawn)) and all(k.startswith("prog-") for k in keys)  # one key per candidate
    assert Candidate.from_dict(drawn[0].to_dict()) == drawn[0]
    assert len({tuple(space.encode(c)) for c in drawn}) == len(set(drawn))  # encode tells candidates apart
    with pytest.raises(ValueError, match="this space cannot suggest layers 0 heads 1 ffn 16 fp32"):
        space.params_for(Candidate((0,), (1,), (16,)))  # a cut candidate: a program cannot be cut

    fp32_only = _space(digits_program, SpaceBounds())  # a device that runs only fp32 (host-x86)
    trial = study.ask()
    fp32_only.suggest(trial)
    assert set(trial.params) == {"sparsity"}
    starts = fp32_only.warm_start()
    assert starts[0] == fp32_only.full_candidate() and [c.sparsity for c in starts] == [0.0, 0.75, 0.5]


def test_the_dimensions_say_which_are_open_and_why_the_others_are_closed() -> None:
    text = describe_dimensions(program_dimensions(program_bounds(SpaceBounds(), ())))
    assert text.startswith("open: sparsity (0/0.25/0.5/0.75 of every matmul weight (magnitude)); closed: ")
    assert "depth, heads, FFN width, hidden width (needs the model's code" in text
    assert "precision (the devices run only fp32)" in text
    opened = {d.name for d in program_dimensions(program_bounds(ALL_PRECISIONS, ())) if d.open}
    assert opened == {"precision", "sparsity"}
    with pytest.raises(BoundsError, match="min_depth: an inference program without its code keeps its structure"):
        program_bounds(SpaceBounds(min_depth=2), ("min_depth",))


def test_nothing_open_is_refused(digits_program) -> None:
    with pytest.raises(BoundsError, match=r"nothing is left to search .* open: none; closed: .*sparsity \(fixed to 0"):
        _space(digits_program, SpaceBounds(sparsities=(0.0,)), given=("sparsities",))


def test_the_dense_fp32_candidate_is_the_teacher(digits_program, tmp_path) -> None:
    model_file, arrays = digits_program
    space = _space(digits_program)
    teacher = load_program_layer(model_file)
    artifact = space.deploy(space.materialize(space.full_candidate()), space.full_candidate(), [], tmp_path / "fp32")
    np.testing.assert_allclose(program_logits(artifact.directory, (arrays["val_inputs"],)),
                               _logits(teacher, arrays["val_inputs"]), atol=1e-5, rtol=0)
    again = space.deploy(space.materialize(space.full_candidate()), space.full_candidate(), [], tmp_path / "again")
    assert again.content_hash == artifact.content_hash  # byte-identical exports: latency is cached by this hash
    # The user's own weights file, byte for byte: the export changes the weights it is asked to, nothing else.
    assert artifact.params_file.read_bytes() == model_file.with_suffix(".pdiparams").read_bytes()
    # jit.save keeps the inference-time identity dropouts (17 here); the export leaves them out, as devicefit's own do.
    before, after = _op_types(model_file), _op_types(artifact.model_file)
    assert before["dropout"] == 17 and after["dropout"] == 0
    assert before - Counter(dropout=17) == after


def _op_types(model_file: Path) -> Counter:
    from paddle.base.proto import framework_pb2

    return Counter(op.type for op in framework_pb2.ProgramDesc.FromString(model_file.read_bytes()).blocks[0].ops)


def _logits(layer, inputs: np.ndarray) -> np.ndarray:
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    with paddle.no_grad():
        return layer(paddle.to_tensor(inputs)).numpy()


def test_a_sparse_candidate_exports_the_asked_share_of_zero_weights(digits_program, tmp_path) -> None:
    model_file, arrays = digits_program
    space = _space(digits_program)
    candidate = Candidate((), (), (), sparsity=0.5, program=True)
    artifact = space.deploy(space.materialize(candidate), candidate, [], tmp_path / "sparse")
    exported, teacher = _weights(artifact.model_file), _weights(model_file)
    assert sorted(exported) == sorted(teacher)
    pruned = matmul_weights(model_file)
    assert len(pruned) == 4 * 6 + 1  # q, k, v, out, FFN in and out of 4 blocks, and the classifier
    for name in pruned:
        zeros = exported[name] == 0
        # PaddleSlim keeps values equal to its threshold: one fewer zero than round(ratio * n) per matrix.
        assert abs(zeros.mean() - 0.5) <= 1.0 / zeros.size + 1e-9, name
        np.testing.assert_array_equal(exported[name][~zeros], teacher[name][~zeros])  # the rest is untouched
        assert np.abs(exported[name][~zeros]).min() >= np.abs(teacher[name][zeros]).max()  # the smallest went
    for name in set(teacher) - set(pruned):  # norms, biases, embeddings, the patch convolution
        np.testing.assert_array_equal(exported[name], teacher[name])
    assert _val_accuracy(artifact.directory, arrays) >= 0.85  # half of every matrix gone, not fine-tuned


def test_an_int8_candidate_exports_a_quantized_program(digits_program, tmp_path) -> None:
    from paddle.base.proto import framework_pb2

    _, arrays = digits_program
    space = _space(digits_program)
    candidate = Candidate((), (), (), precision="int8", calibration="avg", program=True)
    artifact = space.deploy(space.materialize(candidate), candidate, [], tmp_path / "int8")
    assert artifact.precision == "int8" and artifact.fidelity_tag == "ptq-avg"
    assert artifact.quantization is not None and artifact.quantization.quantized_weights == 25
    ops = _op_types(artifact.model_file)
    assert ops["quantize_linear"] >= 25 and ops["dequantize_linear"] >= 25, ops
    fp32 = _val_accuracy(tmp_path / "int8" / "fp32", arrays)
    assert abs(_val_accuracy(artifact.directory, arrays) - fp32) <= 0.02
    with LiteWorker() as lite:
        result = lite.convert(artifact.model_file, artifact.params_file, "arm", tmp_path / "arm", model_type="protobuf")
    optimized = framework_pb2.ProgramDesc.FromString(result.program_file.read_bytes()).blocks[0].ops
    int8_kernels = Counter(op.type for op in optimized if any(a.name == "enable_int8" and a.b for a in op.attrs))
    assert int8_kernels["fc"] + int8_kernels["matmul_v2"] + int8_kernels["matmul"] >= 25, int8_kernels
