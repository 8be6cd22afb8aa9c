"""The digits-bert example as a devicefit Task: the shipped BERT-style teacher and the digit token splits."""

from __future__ import annotations

from devicefit.evaluators._data import Split, TaskData
from devicefit.examples.digits_bert.data import NUM_CLASSES, load_digit_token_splits
from devicefit.search._task import Task


def build_task(*, seed: int = 0) -> Task:
    """The teacher (loaded from the weights shipped beside this file) and the fixed splits of ``seed``."""
    from devicefit.examples.digits_bert.model import input_spec, load_teacher

    splits = load_digit_token_splits(seed)
    data = TaskData(
        train=Split((splits.train.input_ids,), splits.train.labels),
        val=Split((splits.val.input_ids,), splits.val.labels),
        test=Split((splits.test.input_ids,), splits.test.labels),
        num_classes=NUM_CLASSES,
    )
    return Task(
        name="digits-bert",
        teacher=load_teacher(),
        input_spec=input_spec(),
        data=data,
        description="4-layer BERT-style encoder (d=64) on scikit-learn's digits as 65-token sequences",
    )
