"""Every built-in family, cut for real: reproduction, reordering, shapes and parameter counts.

Small untrained models (d=32, 2-3 blocks) of each family come from ``family_factory`` in conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.spaces import Candidate, TransformerSpace
from devicefit.spaces._materialize import CutPlan, cut_model
from devicefit.spaces._surgery import get_sublayer, join, parameter_count

REPRODUCTION_TOLERANCE = 1e-5
#: The models of conftest's ``family_factory``, and the adapter family each must be recognized as.
FAMILIES = {
    "transformer-encoder-pre": "transformer-encoder",
    "transformer-encoder-post": "transformer-encoder",
    "vit-cls": "vit",
    "vit-mean": "vit",
    "bert": "bert",
}


def outputs(paddle, model, inputs) -> np.ndarray:
    with paddle.no_grad():
        return model(*[paddle.to_tensor(x) for x in inputs]).numpy()


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, family_factory):
    model, batch = family_factory(request.param)
    space = TransformerSpace(model, *batch)
    return request.param, model, batch, space


def test_the_family_is_recognized_with_its_sizes(family) -> None:
    name, _, _, space = family
    layout = space.layout
    assert layout.family == FAMILIES[name]
    assert (layout.num_heads, layout.head_dim, layout.hidden_size) == (4, 8, 32)
    assert layout.hidden_unavailable is None, layout.hidden_unavailable


def test_full_candidate_reproduces_the_teacher(paddle, family) -> None:
    _, teacher, (inputs, _), space = family
    student = space.materialize(space.full_candidate())
    np.testing.assert_allclose(outputs(paddle, student, inputs), outputs(paddle, teacher, inputs), atol=REPRODUCTION_TOLERANCE, rtol=0)


def test_reordering_heads_neurons_and_hidden_channels_alone_does_not_change_outputs(paddle, family) -> None:
    _, teacher, (inputs, _), space = family
    layout = space.layout
    rng = np.random.default_rng(7)
    layers = tuple(range(layout.num_layers))
    plan = CutPlan(
        layers=layers,
        head_orders=tuple(rng.permutation(layout.num_heads) for _ in layers),
        neuron_orders=tuple(rng.permutation(layout.ffn_size) for _ in layers),
        hidden_order=rng.permutation(layout.hidden_size),
    )
    student = cut_model(teacher, space.adapter, layout, plan)
    # The permutation really moved weights (the test could fail): the first query weight differs.
    query = join(layout.block_path(0), layout.block.query)
    assert not np.array_equal(get_sublayer(student, query).weight.numpy(), get_sublayer(teacher, query).weight.numpy())
    np.testing.assert_allclose(outputs(paddle, student, inputs), outputs(paddle, teacher, inputs), atol=REPRODUCTION_TOLERANCE, rtol=0)


def _hand_count(name: str, candidate: Candidate, hidden: int) -> int:
    """The parameter count of a cut student of the conftest models, written out by hand per family."""
    head_dim = 8
    blocks = 0
    for heads, ffn in zip(candidate.heads, candidate.ffn):
        inner = heads * head_dim
        blocks += 3 * (hidden * inner + inner) + (inner * hidden + hidden)  # q, k, v, attention output
        blocks += (hidden * ffn + ffn) + (ffn * hidden + hidden) + 2 * 2 * hidden  # FFN, two LayerNorms
    if name.startswith("transformer-encoder"):  # embed Linear(8, d), mean pooling, head Linear(d, 5)
        return blocks + (8 * hidden + hidden) + (hidden * 5 + 5)
    if name.startswith("vit"):  # conv 2x2 patches, (class token), position embedding, final norm, head
        tokens = 16 + (1 if name == "vit-cls" else 0)
        return blocks + (4 * hidden + hidden) + (hidden if name == "vit-cls" else 0) + tokens * hidden + 2 * hidden + (hidden * 10 + 10)
    # bert: word 19, position 65, type 2 embeddings and their LayerNorm; pooler d -> d; classifier d -> 10
    return blocks + (19 + 65 + 2) * hidden + 2 * hidden + (hidden * hidden + hidden) + (hidden * 10 + 10)


def test_cut_student_has_the_requested_shapes_and_parameter_count(paddle, family) -> None:
    name, teacher, (inputs, _), space = family
    layout = space.layout
    last = layout.num_layers - 1
    candidate = Candidate((0, last), (1, 3), (16, 40), hidden=24)
    student = space.materialize(candidate)
    blocks = get_sublayer(student, layout.blocks_path)
    assert len(blocks) == 2
    block = layout.block
    for position, (heads, ffn) in enumerate(zip(candidate.heads, candidate.ffn)):
        base = layout.block_path(position)
        for role in ("query", "key", "value"):
            assert get_sublayer(student, join(base, block.projection(role))).weight.shape == [24, heads * 8]
        assert get_sublayer(student, join(base, block.attention_output)).weight.shape == [heads * 8, 24]
        assert get_sublayer(student, join(base, block.ffn_in)).weight.shape == [24, ffn]
        assert get_sublayer(student, join(base, block.ffn_out)).weight.shape == [ffn, 24]
    counted = parameter_count(student)
    assert counted == layout.parameter_count(candidate) == _hand_count(name, candidate, 24)
    assert outputs(paddle, student, inputs).shape == outputs(paddle, teacher, inputs).shape
    # The teacher is untouched.
    assert parameter_count(teacher) == layout.parameter_count(space.full_candidate()) == _hand_count(name, space.full_candidate(), 32)


def test_kept_heads_neurons_and_channels_are_the_most_important(paddle, family) -> None:
    _, teacher, _, space = family
    layout, importance = space.layout, space.importance
    block = layout.block
    student = space.materialize(Candidate((1,), (1,), (8,), hidden=16))
    top_head = int(np.argmax(importance.heads[1]))
    top_neurons = np.argsort(-importance.ffn[1], kind="stable")[:8]
    channels = np.argsort(-importance.hidden, kind="stable")[:16]
    teacher_query = get_sublayer(teacher, join(layout.block_path(1), block.query)).weight.numpy()
    expected = teacher_query[np.ix_(channels, np.arange(top_head * 8, (top_head + 1) * 8))]
    np.testing.assert_array_equal(get_sublayer(student, join(layout.block_path(0), block.query)).weight.numpy(), expected)
    teacher_in = get_sublayer(teacher, join(layout.block_path(1), block.ffn_in)).weight.numpy()
    np.testing.assert_array_equal(
        get_sublayer(student, join(layout.block_path(0), block.ffn_in)).weight.numpy(), teacher_in[np.ix_(channels, top_neurons)]
    )


def test_importance_keeps_the_layer_whose_removal_hurts_most(family) -> None:
    _, _, _, space = family
    importance = space.importance
    assert importance.layers_for_depth(1) == (int(np.argmax(importance.layers)),)
    assert importance.layers_for_depth(space.layout.num_layers) == tuple(range(space.layout.num_layers))
    assert importance.heads.shape == (space.layout.num_layers, 4)
    assert importance.hidden.shape == (32,) and np.all(importance.hidden >= 0) and importance.hidden.sum() > 0


def test_a_too_large_candidate_is_refused(family) -> None:
    _, _, _, space = family
    with pytest.raises(ValueError, match="more than the teacher"):
        space.materialize(Candidate((0,), (5,), (8,)))
    with pytest.raises(ValueError, match="hidden width 40"):
        space.materialize(Candidate((0,), (1,), (8,), hidden=40))
