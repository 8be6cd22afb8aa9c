from __future__ import annotations

import numpy as np
import optuna
import pytest

from devicefit.spaces import Candidate, TransformerEncoderSpace, UnsupportedModelError, find_encoder
from devicefit.spaces._encoder import cut_layer


def outputs(paddle, model, batch) -> np.ndarray:
    inputs, _ = batch
    return model(*[paddle.to_tensor(x) for x in inputs]).numpy()


@pytest.mark.parametrize("normalize_before", [True, False])
def test_full_candidate_reproduces_the_teacher(paddle, toy_encoder_factory, toy_batch, normalize_before) -> None:
    teacher = toy_encoder_factory(normalize_before=normalize_before)
    space = TransformerEncoderSpace(teacher, *toy_batch)
    student = space.materialize(space.full_candidate())
    np.testing.assert_allclose(outputs(paddle, student, toy_batch), outputs(paddle, teacher, toy_batch), atol=1e-5)


def test_reordering_heads_and_neurons_alone_does_not_change_outputs(paddle, toy_encoder_factory, toy_batch) -> None:
    teacher = toy_encoder_factory()
    structure = find_encoder(teacher)
    import copy

    student = copy.deepcopy(teacher)
    rng = np.random.default_rng(1)
    for layer in student.encoder.layers:
        cut_layer(layer, structure, rng.permutation(structure.num_heads), rng.permutation(structure.ffn_size))
    np.testing.assert_allclose(outputs(paddle, student, toy_batch), outputs(paddle, teacher, toy_batch), atol=1e-5)


def test_cut_student_has_the_requested_shapes_and_parameter_count(paddle, toy_encoder_factory, toy_batch) -> None:
    teacher = toy_encoder_factory()
    space = TransformerEncoderSpace(teacher, *toy_batch)
    candidate = Candidate((0, 2), (1, 3), (16, 40))
    student = space.materialize(candidate)
    layers = student.encoder.layers
    assert len(layers) == 2
    assert layers[0].self_attn.num_heads == 1 and layers[1].self_attn.num_heads == 3
    assert layers[0].self_attn.q_proj.weight.shape == [32, 8]
    assert layers[1].self_attn.out_proj.weight.shape == [24, 32]
    assert layers[0].linear1.weight.shape == [32, 16] and layers[1].linear2.weight.shape == [40, 32]
    counted = sum(int(np.prod(p.shape)) for p in layers.parameters())
    assert counted == space.structure.encoder_parameter_count(candidate)
    assert outputs(paddle, student, toy_batch).shape == (32, 5)
    # The teacher is untouched.
    assert len(teacher.encoder.layers) == 3 and teacher.encoder.layers[0].self_attn.num_heads == 4


def test_kept_heads_are_the_most_important(paddle, toy_encoder_factory, toy_batch) -> None:
    teacher = toy_encoder_factory()
    space = TransformerEncoderSpace(teacher, *toy_batch)
    top_head = int(np.argmax(space.importance.heads[1]))
    student = space.materialize(Candidate((1,), (1,), (64,)))
    hd = space.structure.head_dim
    kept = student.encoder.layers[0].self_attn.q_proj.weight.numpy()
    original = teacher.encoder.layers[1].self_attn.q_proj.weight.numpy()[:, top_head * hd : (top_head + 1) * hd]
    np.testing.assert_array_equal(kept, original)


def test_importance_keeps_the_layer_whose_removal_hurts_most(paddle, toy_encoder_factory, toy_batch) -> None:
    teacher = toy_encoder_factory()
    space = TransformerEncoderSpace(teacher, *toy_batch)
    assert space.importance.layers_for_depth(1) == (int(np.argmax(space.importance.layers)),)
    assert space.importance.layers_for_depth(3) == (0, 1, 2)


def test_suggest_and_params_for_are_inverse(toy_encoder_factory, toy_batch) -> None:
    space = TransformerEncoderSpace(toy_encoder_factory(), *toy_batch)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    for candidate in space.warm_start():
        study.enqueue_trial(space.params_for(candidate))
    for expected in space.warm_start():
        trial = study.ask()
        assert space.suggest(trial) == expected
        study.tell(trial, [0.0, 0.0])
    for _ in range(10):
        trial = study.ask()
        candidate = space.suggest(trial)
        assert set(trial.params) == {"depth", *(f"heads_{i}" for i in range(3)), *(f"ffn_{i}" for i in range(3))}
        assert all(f % space.ffn_step == 0 for f in candidate.ffn)
        study.tell(trial, [0.0, 0.0])


def test_a_model_without_encoder_is_refused_with_its_name(paddle) -> None:
    class NoEncoder(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.body = paddle.nn.Linear(4, 4)

        def forward(self, x):
            return self.body(x)

    with pytest.raises(UnsupportedModelError, match="NoEncoder has no paddle.nn.TransformerEncoder"):
        find_encoder(NoEncoder())


def test_export_leaves_identity_dropouts_out_and_keeps_the_function(paddle, tmp_path, toy_batch) -> None:
    from paddle.base.proto import framework_pb2

    from devicefit.spaces import export_inference_model

    paddle.seed(0)
    layer = paddle.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3)  # upscale_in_train dropouts
    model = paddle.nn.Sequential(layer, paddle.nn.Dropout(0.5, mode="downscale_in_infer"))
    model.eval()
    artifact = export_inference_model(model, [paddle.static.InputSpec([None, 6, 8], "float32")], tmp_path)
    program = framework_pb2.ProgramDesc()
    program.ParseFromString(artifact.model_file.read_bytes())
    dropouts = [op for op in program.blocks[0].ops if op.type == "dropout"]
    assert len(dropouts) == 1  # only the downscale_in_infer one, which scales at inference
    features = toy_batch[0][0]
    exported = paddle.jit.load(str(tmp_path / "model"))
    np.testing.assert_allclose(exported(paddle.to_tensor(features)).numpy(), model(paddle.to_tensor(features)).numpy(), atol=1e-6)
    assert layer.dropout1.p == 0.3  # the model itself is unchanged
