"""The AccuracyEvaluator contract, run against every rung of the ladder (short budgets, small data)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from devicefit.evaluators import DataError, Split, TaskData
from devicefit.evaluators._accuracy import AccuracyEvaluator, DistillationEvaluator
from devicefit.evaluators._distill import DistillationSettings
from devicefit.evaluators._final import FinalEvaluator, QuantAwareEvaluator
from devicefit.evaluators._zero_cost import ZeroCostEvaluator, ZeroCostSettings
from devicefit.spaces import Candidate

SHORT = DistillationSettings(epochs=2, learning_rate=2e-3)
RUNGS = {
    "zero-cost": lambda teacher, data, **kw: ZeroCostEvaluator(teacher, data, ZeroCostSettings(calibration_samples=64), **kw),
    "distill": lambda teacher, data, **kw: DistillationEvaluator(teacher, data, SHORT, **kw),
    "final": lambda teacher, data, **kw: FinalEvaluator(teacher, data, SHORT, **kw),
}


@dataclasses.dataclass(frozen=True)
class TripwireSplit(Split):
    """A split whose samples must not be read."""

    def take(self, indices):  # type: ignore[no-untyped-def]
        raise AssertionError("the test split was read")


def _with_tripwire(data: TaskData) -> TaskData:
    return dataclasses.replace(data, test=TripwireSplit(data.test.inputs, data.test.labels))


@pytest.mark.parametrize("rung", RUNGS)
def test_a_random_weight_student_scores_below_the_teacher(digits, random_student_factory, rung) -> None:
    evaluator: AccuracyEvaluator = RUNGS[rung](digits.teacher, digits.data)
    teacher_score = evaluator.evaluate(copy.deepcopy(digits.teacher)).accuracy
    broken_score = evaluator.evaluate(random_student_factory()).accuracy
    assert teacher_score > 0.85
    assert broken_score < teacher_score - 0.2
    if isinstance(evaluator, FinalEvaluator):
        teacher = copy.deepcopy(digits.teacher)
        broken = random_student_factory()
        evaluator.evaluate(teacher)
        evaluator.evaluate(broken)
        assert evaluator.test(broken).accuracy < evaluator.test(teacher).accuracy - 0.2


def test_zero_cost_proxies_see_the_broken_student(digits, random_student_factory) -> None:
    evaluator = ZeroCostEvaluator(digits.teacher, digits.data, ZeroCostSettings(calibration_samples=64))
    teacher = evaluator.evaluate(copy.deepcopy(digits.teacher)).details
    broken = evaluator.evaluate(random_student_factory()).details
    assert teacher["calibration_agreement"] == 1.0 and teacher["calibration_kl"] < 1e-9
    assert broken["calibration_agreement"] < 0.5 and broken["calibration_kl"] > 0.5
    assert all(np.isfinite(broken[name]) and np.isfinite(teacher[name]) for name in ("grad_norm", "synflow", "naswot"))
    # A model that is right has small gradients; a random one, large.
    assert broken["grad_norm"] > teacher["grad_norm"]


@pytest.mark.parametrize("rung", RUNGS)
def test_the_contract_of_every_rung(digits, rung) -> None:
    candidate = Candidate(digits.space.importance.layers_for_depth(3), (2, 3, 4), (64, 96, 128))
    before = {name: p.numpy().copy() for name, p in digits.teacher.named_parameters()}
    data = _with_tripwire(digits.data)
    evaluator: AccuracyEvaluator = RUNGS[rung](digits.teacher, data, metric="macro_f1")
    student = digits.space.materialize(candidate)
    result = evaluator.evaluate(student, teacher_layers=candidate.layers)
    assert result.fidelity == evaluator.fidelity and result.split == "val" and result.metric == "macro_f1"
    assert 0.0 <= result.accuracy <= 1.0 and result.seconds > 0
    assert not student.training
    for name, parameter in digits.teacher.named_parameters():
        np.testing.assert_array_equal(parameter.numpy(), before[name])
    # Only the last rung reads the test split, and only when asked for held-out figures.
    assert evaluator.reads_test == isinstance(evaluator, FinalEvaluator)
    if isinstance(evaluator, FinalEvaluator):
        with pytest.raises(AssertionError, match="the test split was read"):
            evaluator.test(student)


def test_a_user_metric_is_what_the_rung_reports(digits) -> None:
    def share_of_zeros_predicted(logits: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(np.argmax(logits, axis=1) == 0))

    result = RUNGS["zero-cost"](digits.teacher, digits.data, metric=share_of_zeros_predicted).evaluate(
        copy.deepcopy(digits.teacher)
    )
    assert result.metric == "share_of_zeros_predicted"
    assert result.accuracy == pytest.approx(np.mean(digits.data.val.labels == 0), abs=0.05)


def test_the_int8_rung_is_a_final_rung_with_its_own_name(digits) -> None:
    evaluator = QuantAwareEvaluator(digits.teacher, digits.data, SHORT, qat_settings=DistillationSettings(epochs=1))
    assert evaluator.reads_test and evaluator.fidelity == "final-distill-2ep+qat-distill-1ep"


def test_bad_data_fails_before_any_training(digits) -> None:
    with pytest.raises(DataError, match=r"val labels must be in \[0, 10\), found 3..12"):
        dataclasses.replace(digits.data, val=Split(digits.data.val.inputs, digits.data.val.labels + 3))
