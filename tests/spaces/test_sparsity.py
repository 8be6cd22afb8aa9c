"""Unstructured sparsity: PaddleSlim's pruner sets the zeros, fine-tuning keeps them, export carries them."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.evaluators import Split, TaskData
from devicefit.evaluators._accuracy import DistillationEvaluator, DistillationSettings
from devicefit.spaces import Candidate, TransformerSpace, export_inference_model, program_logits
from devicefit.spaces._materialize import block_linear_weights, count_zero_weights
from devicefit.spaces._surgery import get_parameter


@pytest.fixture(scope="module")
def bert_space(family_factory):
    model, batch = family_factory("bert")
    return TransformerSpace(model, *batch)


def _zero_masks(student, layout) -> dict[str, np.ndarray]:
    depth = len(student.bert.encoder.layer)
    return {path: get_parameter(student, path).numpy() == 0 for path in block_linear_weights(layout, depth)}


def test_the_requested_share_of_every_projection_is_zero(bert_space) -> None:
    candidate = Candidate((0, 1), (4, 2), (48, 24), sparsity=0.5)
    student = bert_space.materialize(candidate)
    for path, zeros in _zero_masks(student, bert_space.layout).items():
        # PaddleSlim keeps values equal to its threshold: one fewer zero than round(ratio * n) per matrix.
        assert abs(zeros.mean() - 0.5) <= 1.0 / zeros.size + 1e-9, path
    zeros, total = count_zero_weights(student, bert_space.layout)
    assert total == (4 * 32 * 32 + 2 * 32 * 48) + (4 * 32 * 16 + 2 * 32 * 24)  # q, k, v, output; FFN in, out
    # Only the blocks' projections are pruned: embeddings, norms and the classifier keep every value.
    assert np.count_nonzero(student.bert.embeddings.word_embeddings.weight.numpy()) == 19 * 32
    assert np.count_nonzero(student.bert.encoder.layer[0].attention.output.LayerNorm.weight.numpy()) == 32
    assert np.count_nonzero(student.classifier.weight.numpy()) == 32 * 10
    dense = bert_space.materialize(Candidate((0, 1), (4, 2), (48, 24)))
    assert count_zero_weights(dense, bert_space.layout)[0] == 0


def test_fine_tuning_keeps_the_zeros_and_moves_the_rest(paddle, bert_space, family_factory) -> None:
    model, ((tokens,), labels) = family_factory("bert")
    split = Split((tokens,), labels)
    data = TaskData(split, split, split, num_classes=5)
    student = bert_space.materialize(Candidate((0, 1), (4, 4), (48, 48), sparsity=0.6))
    before = {path: get_parameter(student, path).numpy().copy() for path in block_linear_weights(bert_space.layout, 2)}
    masks = _zero_masks(student, bert_space.layout)
    DistillationEvaluator(model, data, DistillationSettings(epochs=2, batch_size=8, learning_rate=1e-2)).distill(student)
    for path, zeros in masks.items():
        after = get_parameter(student, path).numpy()
        assert np.all(after[zeros] == 0), path
        assert not np.allclose(after[~zeros], before[path][~zeros]), path  # the optimizer did move the others


def test_the_exported_program_holds_the_zeros_and_no_mask_ops(paddle, bert_space, family_factory, tmp_path) -> None:
    from devicefit.examples.digits_bert.model import input_spec

    _, ((tokens,), _) = family_factory("bert")
    sparse = bert_space.materialize(Candidate((0, 1), (4, 4), (48, 48), sparsity=0.5))
    dense = bert_space.materialize(Candidate((0, 1), (4, 4), (48, 48)))
    sparse_dir, dense_dir = tmp_path / "sparse", tmp_path / "dense"
    export_inference_model(sparse, input_spec(), sparse_dir)
    export_inference_model(dense, input_spec(), dense_dir)
    with paddle.no_grad():
        eager = sparse(paddle.to_tensor(tokens)).numpy()
    np.testing.assert_allclose(program_logits(sparse_dir, (tokens,)), eager, atol=1e-5, rtol=0)
    assert (sparse_dir / "model.pdmodel").read_bytes() != b""
    # The pruner's hooks and mask buffers stayed out of the program: same program size as the dense one.
    assert abs((sparse_dir / "model.pdmodel").stat().st_size - (dense_dir / "model.pdmodel").stat().st_size) < 64
    assert (sparse_dir / "model.pdiparams").stat().st_size == (dense_dir / "model.pdiparams").stat().st_size
