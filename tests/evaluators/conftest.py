"""Fixtures of the evaluator tests: the shipped digits ViT teacher on a small slice of its data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from devicefit.evaluators import TaskData


@dataclasses.dataclass(frozen=True)
class SmallDigits:
    """The trained 4-layer ViT (d=64), a space over it, and 320/100/100 digits."""

    teacher: object
    input_spec: list
    data: TaskData
    space: object


@pytest.fixture(scope="session")
def digits(paddle) -> SmallDigits:
    from devicefit.examples.digits_vit.task import build_task
    from devicefit.spaces import TransformerEncoderSpace

    task = build_task(seed=0)
    data = TaskData(
        train=task.data.train.take(np.arange(320)),
        val=task.data.val.take(np.arange(100)),
        test=task.data.test.take(np.arange(100)),
        num_classes=task.data.num_classes,
    )
    calibration = data.train.take(np.arange(128))
    space = TransformerEncoderSpace(task.teacher, calibration.inputs, calibration.labels)
    return SmallDigits(task.teacher, task.input_spec, data, space)


@pytest.fixture(scope="session")
def random_student_factory(paddle):
    """Students with the teacher's architecture and random weights: a deliberately broken model."""

    def make(seed: int = 123):
        from devicefit.examples.digits_vit.model import DigitsViT, ViTConfig, read_teacher_metadata

        paddle.seed(seed)
        model = DigitsViT(ViTConfig.from_dict(read_teacher_metadata()["config"]))
        model.eval()
        return model

    return make
