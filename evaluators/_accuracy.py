"""Accuracy evaluators: the contract, and the short distillation fine-tune used during the search."""

from __future__ import annotations

import abc
import dataclasses
import time
from typing import Any

import numpy as np

from devicefit.evaluators._data import Split, TaskData
from devicefit.evaluators._types import AccuracyResult
from devicefit.spaces._paddle import import_paddle


class AccuracyEvaluator(abc.ABC):
    """Scores a student ``paddle.nn.Layer``.

    Contract:
        - :meth:`evaluate` may train the student in place (a fine-tuning rung does); afterwards the student
          is in eval mode and is the model the returned accuracy describes, so exporting it exports
          exactly what was scored.
        - It scores on the validation split, never on the test split.
        - The result names its rung in ``fidelity``.
    """

    @abc.abstractmethod
    def evaluate(self, student: Any) -> AccuracyResult:
        """Score (and possibly fine-tune) ``student``."""


def predict_logits(model: Any, split: Split, *, batch_size: int = 256) -> np.ndarray:
    """The model's logits on every sample of ``split`` (eval mode, no gradients)."""
    paddle = import_paddle()
    model.eval()
    outputs = []
    with paddle.no_grad():
        for start in range(0, len(split), batch_size):
            batch = split.take(slice(start, start + batch_size))
            outputs.append(model(*[paddle.to_tensor(x) for x in batch.inputs]).numpy())
    return np.concatenate(outputs)


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose arg-max logit is the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


@dataclasses.dataclass(frozen=True)
class DistillationSettings:
    """A short logit-distillation fine-tune.

    Attributes:
        epochs: Passes over the training split.
        batch_size: Samples per step.
        learning_rate: AdamW peak learning rate (cosine decay to zero over the run).
        weight_decay: AdamW weight decay.
        temperature: Softmax temperature of the distillation term.
        alpha: Weight of the distillation term; ``1 - alpha`` weighs cross-entropy with the labels.
        seed: Seeds the shuffling and Paddle's generator.
    """

    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    temperature: float = 2.0
    alpha: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError(f"invalid distillation settings: {self}")
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise ValueError(f"alpha must be in [0, 1] and temperature > 0: {self}")

    @property
    def fidelity(self) -> str:
        """The rung's name, as recorded next to every accuracy it produces."""
        return f"distill-{self.epochs}ep"


class DistillationEvaluator(AccuracyEvaluator):
    """Fine-tunes the student against the teacher's logits (and the labels), then scores it on ``val``.

    The teacher's logits on the training split are computed once and reused for every student.
    """

    def __init__(self, teacher: Any, data: TaskData, settings: DistillationSettings = DistillationSettings()) -> None:
        self.teacher = teacher
        self.data = data
        self.settings = settings
        self._teacher_logits: np.ndarray | None = None

    @property
    def teacher_logits(self) -> np.ndarray:
        """The teacher's logits on the training split."""
        if self._teacher_logits is None:
            self._teacher_logits = predict_logits(self.teacher, self.data.train)
        return self._teacher_logits

    def distill(self, student: Any) -> dict[str, float]:
        """Run the fine-tune in place; returns the mean loss of the first and of the last epoch."""
        paddle = import_paddle()
        functional = paddle.nn.functional
        settings = self.settings
        train = self.data.train
        if settings.epochs == 0:
            return {}
        paddle.seed(settings.seed)
        rng = np.random.default_rng(settings.seed)
        steps_per_epoch = max(1, -(-len(train) // settings.batch_size))
        schedule = paddle.optimizer.lr.CosineAnnealingDecay(settings.learning_rate, T_max=steps_per_epoch * settings.epochs)
        optimizer = paddle.optimizer.AdamW(
            learning_rate=schedule, parameters=student.parameters(), weight_decay=settings.weight_decay
        )
        temperature = settings.temperature
        epoch_losses = []
        student.train()
        for _ in range(settings.epochs):
            order = rng.permutation(len(train))
            losses = []
            for start in range(0, len(train), settings.batch_size):
                indices = order[start : start + settings.batch_size]
                batch = train.take(indices)
                logits = student(*[paddle.to_tensor(x) for x in batch.inputs])
                soft_targets = functional.softmax(paddle.to_tensor(self.teacher_logits[indices]) / temperature)
                kd = functional.kl_div(
                    functional.log_softmax(logits / temperature), soft_targets, reduction="batchmean"
                ) * (temperature**2)
                ce = functional.cross_entropy(logits, paddle.to_tensor(batch.labels))
                loss = settings.alpha * kd + (1.0 - settings.alpha) * ce
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
                schedule.step()
                losses.append(float(loss))
            epoch_losses.append(float(np.mean(losses)))
        student.eval()
        return {"loss_first_epoch": epoch_losses[0], "loss_last_epoch": epoch_losses[-1]}

    def evaluate(self, student: Any) -> AccuracyResult:
        started = time.perf_counter()
        details: dict[str, Any] = dict(self.distill(student))
        accuracy = top1_accuracy(predict_logits(student, self.data.val), self.data.val.labels)
        details["epochs"] = self.settings.epochs
        return AccuracyResult(accuracy, "val", self.settings.fidelity, time.perf_counter() - started, details)


def test_accuracy(model: Any, data: TaskData) -> float:
    """Top-1 accuracy on the held-out test split (for final models only)."""
    return top1_accuracy(predict_logits(model, data.test), data.test.labels)


test_accuracy.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
