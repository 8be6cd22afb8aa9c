from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from devicefit.evaluators._accuracy import DistillationEvaluator, predict_logits
from devicefit.evaluators._distill import (
    DistillationSettings,
    Distiller,
    hidden_loss,
    relation_loss,
    uniform_layer_map,
)
from devicefit.evaluators._metrics import teacher_kl
from devicefit.evaluators._taps import tap_blocks
from devicefit.spaces import Candidate


def _cut(digits) -> Candidate:
    return Candidate(digits.space.importance.layers_for_depth(2), (2, 1), (48, 32))


def test_distillation_lowers_the_kd_loss(digits) -> None:
    student = digits.space.materialize(_cut(digits))
    teacher_val = predict_logits(digits.teacher, digits.data.val)
    before = teacher_kl(predict_logits(student, digits.data.val), teacher_val, temperature=2.0)
    log = Distiller(digits.teacher, digits.data.train).run(student, DistillationSettings(epochs=3, learning_rate=2e-3))
    after = teacher_kl(predict_logits(student, digits.data.val), teacher_val, temperature=2.0)
    assert after < 0.8 * before
    assert log.loss_last_epoch < log.loss_first_epoch
    assert log.steps == 15 and log.stopped_by == "epochs" and not student.training


def test_feature_and_relation_terms_vanish_for_the_teacher_itself(paddle, digits) -> None:
    structure = digits.space.layout
    inputs = [paddle.to_tensor(x) for x in digits.data.val.take(slice(0, 16)).inputs]
    with tap_blocks(digits.teacher, structure) as teacher_taps, paddle.no_grad():
        digits.teacher(*inputs)
    for candidate, vanishes in ((digits.space.full_candidate(), True), (_cut(digits), False)):
        student = digits.space.materialize(candidate)
        with tap_blocks(student, structure) as student_taps, paddle.no_grad():
            student(*inputs)
        mapped = [teacher_taps.hidden[i] for i in candidate.layers]
        hidden = float(hidden_loss(paddle, student_taps.hidden, mapped))
        relation = float(
            relation_loss(
                paddle,
                (student_taps.queries[-1], student_taps.keys[-1], student_taps.values[-1]),
                (teacher_taps.queries[-1], teacher_taps.keys[-1], teacher_taps.values[-1]),
            )
        )
        if vanishes:
            assert hidden < 1e-8 and abs(relation) < 1e-6
        else:
            assert hidden > 1e-3 and relation > 1e-3


def test_all_terms_train_together_and_the_teacher_is_left_alone(digits) -> None:
    before = {name: p.numpy().copy() for name, p in digits.teacher.named_parameters()}
    candidate = _cut(digits)
    settings = DistillationSettings(epochs=1, max_steps=3, hidden_weight=1.0, relation_weight=1.0)
    result = DistillationEvaluator(digits.teacher, digits.data, settings).evaluate(
        digits.space.materialize(candidate), teacher_layers=candidate.layers
    )
    assert result.fidelity == "distill-1ep-3st+hidden+relation"
    assert set(result.details["term_means"]) == {"logit", "ce", "hidden", "relation"}
    assert all(np.isfinite(v) and v > 0 for v in result.details["term_means"].values())
    assert result.details["steps"] == 3 and result.details["stopped_by"] == "max_steps"
    for name, parameter in digits.teacher.named_parameters():
        np.testing.assert_array_equal(parameter.numpy(), before[name])
    assert not digits.teacher.training
    # No hook is left on the teacher: a forward pass afterwards is plain.
    assert all(not layer._forward_post_hooks for layer in digits.teacher.sublayers())


def test_the_hidden_term_checks_the_layer_map(digits) -> None:
    settings = DistillationSettings(epochs=1, max_steps=1, hidden_weight=1.0)
    with pytest.raises(ValueError, match="teacher_layers .* has 3 entries; the student has 2 layers"):
        Distiller(digits.teacher, digits.data.train).run(
            digits.space.materialize(_cut(digits)), settings, teacher_layers=(0, 1, 2)
        )


def test_budgets_bound_the_loop(digits) -> None:
    distiller = Distiller(digits.teacher, digits.data.train)
    log = distiller.run(digits.space.materialize(_cut(digits)), DistillationSettings(epochs=5, max_seconds=1e-3))
    assert log.steps == 1 and log.stopped_by == "max_seconds"
    student = digits.space.materialize(_cut(digits))
    weights = [p.numpy().copy() for p in student.parameters()]
    log = distiller.run(student, DistillationSettings(epochs=0))
    assert log.steps == 0 and log.loss_first_epoch is None
    for parameter, weight in zip(student.parameters(), weights):
        np.testing.assert_array_equal(parameter.numpy(), weight)


def test_same_seed_same_student(digits) -> None:
    settings = DistillationSettings(epochs=1, max_steps=4, relation_weight=1.0, seed=3)
    outputs = []
    for _ in range(2):
        student = digits.space.materialize(_cut(digits))
        Distiller(digits.teacher, digits.data.train).run(student, settings)
        outputs.append(predict_logits(student, digits.data.val))
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)


def test_uniform_layer_map() -> None:
    assert uniform_layer_map(1, 4) == (3,)
    assert uniform_layer_map(2, 4) == (1, 3)
    assert uniform_layer_map(3, 4) == (1, 2, 3)
    assert uniform_layer_map(4, 4) == (0, 1, 2, 3)


def test_settings_are_validated_and_named() -> None:
    assert DistillationSettings(epochs=3).fidelity == "distill-3ep"
    assert DistillationSettings(epochs=1, max_seconds=2.5, hidden_weight=0.5).fidelity == "distill-1ep-2.5s+hidden"
    for bad in ({"max_steps": 0}, {"max_seconds": 0.0}, {"alpha": 1.5}, {"hidden_weight": -1.0}, {"epochs": -1}):
        with pytest.raises(ValueError):
            DistillationSettings(**bad)


def test_a_narrower_student_learns_the_teachers_hidden_states_through_a_map(digits) -> None:
    assert digits.space.hidden_searched
    candidate = Candidate(digits.space.importance.layers_for_depth(2), (2, 2), (64, 64), hidden=48)
    student = digits.space.materialize(candidate)
    settings = DistillationSettings(epochs=1, max_steps=3, hidden_weight=1.0)
    log = Distiller(digits.teacher, digits.data.train, layout=digits.space.layout).run(
        student, settings, teacher_layers=candidate.layers
    )
    assert log.hidden_projected and np.isfinite(log.term_means["hidden"]) and log.term_means["hidden"] > 0
    full = Distiller(digits.teacher, digits.data.train).run(digits.space.materialize(_cut(digits)), settings)
    assert not full.hidden_projected


def test_the_terms_work_on_a_bert_style_model_through_its_layout(paddle) -> None:
    from devicefit.examples.digits_bert.task import build_task
    from devicefit.spaces import TransformerSpace

    task = build_task(seed=0)
    batch = task.data.train.take(np.arange(32))
    space = TransformerSpace(task.teacher, batch.inputs, batch.labels)
    assert space.layout.family == "bert"
    inputs = [paddle.to_tensor(x) for x in batch.inputs]
    with tap_blocks(task.teacher, space.layout) as teacher_taps, paddle.no_grad():
        task.teacher(*inputs)
    student = space.materialize(space.full_candidate())
    with tap_blocks(student, space.layout) as student_taps, paddle.no_grad():
        student(*inputs)
    assert len(student_taps.hidden) == space.layout.num_layers
    assert float(hidden_loss(paddle, student_taps.hidden, teacher_taps.hidden)) < 1e-8
    last = (student_taps.queries[-1], student_taps.keys[-1], student_taps.values[-1])
    assert abs(float(relation_loss(paddle, last, (teacher_taps.queries[-1], teacher_taps.keys[-1], teacher_taps.values[-1])))) < 1e-6
    cut = Candidate(space.importance.layers_for_depth(2), (1, 2), (64, 64))
    data = dataclasses.replace(task.data, train=task.data.train.take(np.arange(128)))
    log = Distiller(task.teacher, data.train, layout=space.layout).run(
        space.materialize(cut), DistillationSettings(epochs=1, max_steps=2, hidden_weight=1.0, relation_weight=1.0),
        teacher_layers=cut.layers,
    )
    assert log.steps == 2 and log.term_means["hidden"] > 0 and log.term_means["relation"] > 0
