from __future__ import annotations

import numpy as np

from devicefit.evaluators._taps import tap_blocks, teacher_layout
from devicefit.spaces import Candidate, TransformerSpace


def test_taps_capture_every_layer_with_its_shapes(paddle, toy_encoder_factory, toy_batch) -> None:
    teacher = toy_encoder_factory()
    space = TransformerSpace(teacher, *toy_batch)
    structure = space.layout
    student = space.materialize(Candidate((0, 2), (1, 3), (16, 40)))
    inputs = [paddle.to_tensor(x) for x in toy_batch[0]]
    with tap_blocks(student, structure) as taps:
        student(*inputs)
    assert [t.shape for t in taps.hidden] == [[32, 6, 32], [32, 6, 32]]
    assert [t.shape for t in taps.queries] == [[32, 6, 8], [32, 6, 24]]
    assert [t.shape for t in taps.values] == [[32, 6, 8], [32, 6, 24]]
    assert [t.shape for t in taps.ffn_inner] == [[32, 6, 16], [32, 6, 40]]
    # The hooks are gone afterwards: another pass captures nothing.
    student(*inputs)
    assert len(taps.hidden) == 2
    taps.clear()
    assert taps.hidden == [] and taps.keys == []


def test_hooks_are_removed_when_the_body_raises(paddle, toy_encoder_factory, toy_batch) -> None:
    teacher = toy_encoder_factory()
    structure = teacher_layout(teacher)
    try:
        with tap_blocks(teacher, structure) as taps:
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    teacher(*[paddle.to_tensor(x) for x in toy_batch[0]])
    assert taps.hidden == []


def test_tapped_tensors_carry_gradients_into_the_model(paddle, toy_encoder_factory, toy_batch) -> None:
    teacher = toy_encoder_factory()
    structure = teacher_layout(teacher)
    with tap_blocks(teacher, structure) as taps:
        teacher(*[paddle.to_tensor(x) for x in toy_batch[0]])
        paddle.mean(taps.hidden[0] ** 2).backward()
    first = teacher.encoder.layers[0].linear1.weight.grad
    last = teacher.encoder.layers[2].linear1.weight.grad
    assert first is not None and float(paddle.abs(first).sum()) > 0
    assert last is None or float(paddle.abs(last).sum()) == 0
    teacher.clear_gradients()


def test_the_last_hidden_state_is_what_the_encoder_returns(paddle, toy_encoder_factory, toy_batch) -> None:
    teacher = toy_encoder_factory(normalize_before=False)
    structure = teacher_layout(teacher)
    inputs = paddle.to_tensor(toy_batch[0][0])
    with tap_blocks(teacher, structure) as taps:
        encoded = teacher.encoder(teacher.embed(inputs))
    np.testing.assert_allclose(taps.hidden[-1].numpy(), encoded.numpy(), atol=1e-6)
