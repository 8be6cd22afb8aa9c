"""The digits-vit example as a devicefit Task: the shipped teacher and the digits splits."""

from __future__ import annotations

from devicefit.evaluators._data import Split, TaskData
from devicefit.examples.digits_vit.data import NUM_CLASSES, load_digits_splits
from devicefit.search._task import Task


def build_task(*, seed: int = 0) -> Task:
    """The teacher (loaded from the weights shipped beside this file) and the fixed splits of ``seed``."""
    from devicefit.examples.digits_vit.model import input_spec, load_teacher

    splits = load_digits_splits(seed)
    data = TaskData(
        train=Split((splits.train.images,), splits.train.labels),
        val=Split((splits.val.images,), splits.val.labels),
        test=Split((splits.test.images,), splits.test.labels),
        num_classes=NUM_CLASSES,
    )
    return Task(
        name="digits-vit",
        teacher=load_teacher(),
        input_spec=input_spec(),
        data=data,
        description="4-layer ViT (d=64) on scikit-learn's 8x8 digits",
    )
