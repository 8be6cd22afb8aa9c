"""Knowledge distillation from the teacher into a student: the settings, the loss terms, the training loop.

Three kinds of knowledge can be transferred (Gou et al., "Knowledge Distillation: A Survey", 2021):
  - response-based: the teacher's softened logits (Hinton et al., 2015), always on, mixed with the
    labels' cross-entropy by ``alpha``;
  - feature-based: the hidden states of mapped blocks (as in TinyBERT), ``hidden_weight``; when the
    student's hidden width is narrower than the teacher's, a linear map from the student's width to the
    teacher's is learned along (TinyBERT's ``W_h``) and discarded afterwards;
  - relation-based: the self-attention relations of the last layer, query-query, key-key and value-value
    (MiniLMv2, Wang et al., 2021), ``relation_weight``. Relations are ``[tokens, tokens]`` matrices, so they
    compare a student and a teacher with different numbers of heads. MiniLMv2 splits the concatenated heads
    into several "relation heads"; here there is one, over all heads together, because a student cut by
    importance keeps its heads in a different order than the teacher's, and only the relation over all
    columns is independent of that order (split relation heads would pair unrelated heads).
Which terms help is measured by ``bench/proxy_fidelity.py``, not assumed; the defaults follow it. On the
digits ViT (32 candidates, one epoch at lr 2e-3), neither extra term helped: mean validation accuracy moved
by +0.2 (hidden), -0.3 (relation) and +0.1 (both) points against logit-only, each within its 90% interval
of zero, and neither ranked candidates better (Kendall tau 0.78, 0.77, 0.75 against 0.79); they cost 44-51%
more time. So both are off by default (``bench/results/proxy_fidelity.txt``).

The loop is bounded by epochs, and optionally by steps and by seconds; whichever ends first ends it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from devicefit.evaluators._data import Split
from devicefit.evaluators._predict import predict_logits
from devicefit.evaluators._taps import BlockTaps, tap_blocks, teacher_layout
from devicefit.spaces._layout import ModelLayout
from devicefit.spaces._paddle import import_paddle


@dataclasses.dataclass(frozen=True)
class DistillationSettings:
    """A distillation fine-tune: its budget, optimiser and loss terms.

    Attributes:
        epochs: Passes over the training split (the loop's main bound; 0 trains nothing).
        max_steps: Stop after this many optimiser steps (``None``: no step bound).
        max_seconds: Stop once this many seconds of training have passed (``None``: no time bound). A time
            bound makes the result depend on the machine's speed; prefer steps for reproducible runs.
        batch_size: Samples per step.
        learning_rate: AdamW peak learning rate; cosine decay to zero over the planned steps.
        weight_decay: AdamW weight decay.
        temperature: Softmax temperature of the logit term.
        alpha: Weight of the logit (response) term; ``1 - alpha`` weighs cross-entropy with the labels.
        hidden_weight: Weight of the hidden-state (feature) term; 0 leaves it out.
        relation_weight: Weight of the attention-relation (MiniLMv2) term; 0 leaves it out.
        seed: Seeds the shuffling and Paddle's generator (dropout).
    """

    epochs: int = 1
    max_steps: int | None = None
    max_seconds: float | None = None
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    temperature: float = 2.0
    alpha: float = 0.7
    hidden_weight: float = 0.0
    relation_weight: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError(f"invalid distillation settings: {self}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise ValueError(f"alpha must be in [0, 1] and temperature > 0: {self}")
        if self.hidden_weight < 0 or self.relation_weight < 0:
            raise ValueError(f"term weights must be >= 0: {self}")

    @property
    def uses_taps(self) -> bool:
        """Whether a term needs the encoder's intermediate tensors."""
        return self.hidden_weight > 0 or self.relation_weight > 0

    @property
    def fidelity(self) -> str:
        """The rung's name, recorded next to every figure it produces, e.g. ``distill-2ep+hidden``."""
        budget = f"{self.epochs}ep"
        if self.max_steps is not None:
            budget += f"-{self.max_steps}st"
        if self.max_seconds is not None:
            budget += f"-{self.max_seconds:g}s"
        terms = ("+hidden" if self.hidden_weight > 0 else "") + ("+relation" if self.relation_weight > 0 else "")
        return f"distill-{budget}{terms}"


@dataclasses.dataclass(frozen=True)
class DistillationLog:
    """What a fine-tune did.

    Attributes:
        steps: Optimiser steps taken.
        epochs: Epochs started.
        seconds: Wall time of the loop.
        stopped_by: ``epochs``, ``max_steps`` or ``max_seconds``.
        loss_first_epoch: Mean total loss over the first epoch's steps (``None`` when no step was taken).
        loss_last_epoch: Mean total loss over the last epoch's steps (``None`` when no step was taken).
        term_means: Mean of each term over all steps (``logit``, ``ce``, ``hidden``, ``relation``).
        hidden_projected: The hidden term learned a map from the student's narrower width to the teacher's.
    """

    steps: int
    epochs: int
    seconds: float
    stopped_by: str
    loss_first_epoch: float | None
    loss_last_epoch: float | None
    term_means: dict[str, float]
    hidden_projected: bool = False

    def to_details(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def uniform_layer_map(student_depth: int, teacher_depth: int) -> tuple[int, ...]:
    """TinyBERT's uniform map: student layer ``i`` of ``m`` learns from teacher layer ``ceil((i+1) n/m) - 1``."""
    return tuple(math.ceil((i + 1) * teacher_depth / student_depth) - 1 for i in range(student_depth))


def logit_loss(paddle: Any, student_logits: Any, teacher_logits: Any, temperature: float) -> Any:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, mean over the batch."""
    functional = paddle.nn.functional
    soft_targets = functional.softmax(teacher_logits / temperature)
    kl = functional.kl_div(functional.log_softmax(student_logits / temperature), soft_targets, reduction="batchmean")
    return kl * (temperature**2)


def hidden_loss(paddle: Any, student_hidden: Sequence[Any], teacher_hidden: Sequence[Any]) -> Any:
    """Mean over layer pairs of ``MSE(student, teacher) / mean(teacher^2)``: a scale-free feature term.

    Args:
        student_hidden: The student's mapped layers' outputs, ``[batch, tokens, width]`` each.
        teacher_hidden: The teacher's layers they learn from, same shapes.
    """
    terms = []
    for student, teacher in zip(student_hidden, teacher_hidden):
        scale = paddle.mean(teacher * teacher) + 1e-6
        terms.append(paddle.mean((student - teacher) ** 2) / scale)
    return paddle.add_n(terms) / len(terms)


def _relations(paddle: Any, vectors: Any) -> Any:
    """Scaled dot-product relations ``[batch, tokens, tokens]`` of ``vectors`` ``[batch, tokens, width]``."""
    return paddle.matmul(vectors, vectors, transpose_y=True) / math.sqrt(int(vectors.shape[-1]))


def relation_loss(paddle: Any, student: Sequence[Any], teacher: Sequence[Any]) -> Any:
    """MiniLMv2 self-attention relation term: mean over Q-Q, K-K, V-V of ``KL(teacher || student)`` of the
    row-wise softmax of the relations, averaged over batch and tokens. Independent of the heads' order.

    Args:
        student: The student's last-layer ``(queries, keys, values)``, each ``[batch, tokens, width_s]``.
        teacher: The teacher's, each ``[batch, tokens, width_t]``.
    """
    functional = paddle.nn.functional
    terms = []
    for s_vectors, t_vectors in zip(student, teacher):
        target = functional.softmax(_relations(paddle, t_vectors), axis=-1)
        log_student = functional.log_softmax(_relations(paddle, s_vectors), axis=-1)
        kl = paddle.sum(target * (paddle.log(target + 1e-12) - log_student), axis=-1)
        terms.append(paddle.mean(kl))
    return paddle.add_n(terms) / len(terms)


class Distiller:
    """Fine-tunes students against one teacher on one training split.

    The teacher's logits on the training split are computed once and reused for every student; the
    teacher's intermediate tensors (for the hidden and relation terms) are computed batch by batch. The
    teacher is never modified and stays in eval mode.

    Args:
        teacher: The trained model.
        train: The training split.
        layout: Where the teacher's blocks are (the search space's ``layout``); found with the default
            family adapters on first use, when a term needs it.
    """

    def __init__(self, teacher: Any, train: Split, *, layout: ModelLayout | None = None) -> None:
        self.teacher = teacher
        self.train = train
        self._layout = layout
        self._teacher_logits: np.ndarray | None = None

    @property
    def layout(self) -> ModelLayout:
        """The teacher's layout (found on first use)."""
        if self._layout is None:
            self._layout = teacher_layout(self.teacher)
        return self._layout

    @property
    def teacher_logits(self) -> np.ndarray:
        """The teacher's logits on the training split, ``[N, classes]``."""
        if self._teacher_logits is None:
            self._teacher_logits = predict_logits(self.teacher, self.train)
        return self._teacher_logits

    def run(
        self, student: Any, settings: DistillationSettings, *, teacher_layers: Sequence[int] | None = None
    ) -> DistillationLog:
        """Fine-tune ``student`` in place; it is left in eval mode.

        Args:
            student: The model to train (any ``paddle.nn.Layer`` with the teacher's inputs and outputs).
            settings: Budget, optimiser and terms.
            teacher_layers: For the hidden term, the teacher layer each student encoder layer learns from
                (a candidate's ``layers``); by default :func:`uniform_layer_map`.
        """
        paddle = import_paddle()
        started = time.perf_counter()
        train = self.train
        steps_per_epoch = max(1, -(-len(train) // settings.batch_size))
        planned = steps_per_epoch * settings.epochs
        if settings.max_steps is not None:
            planned = min(planned, settings.max_steps)
        if planned == 0:
            student.eval()
            return DistillationLog(0, 0, 0.0, "epochs", None, None, {})
        paddle.seed(settings.seed)
        rng = np.random.default_rng(settings.seed)
        self.teacher_logits  # noqa: B018  (computed now, before any tap is registered on the teacher)
        projection = self._hidden_projection(paddle, student) if settings.hidden_weight > 0 else None
        parameters = student.parameters() + (projection.parameters() if projection is not None else [])
        schedule = paddle.optimizer.lr.CosineAnnealingDecay(settings.learning_rate, T_max=planned)
        optimizer = paddle.optimizer.AdamW(
            learning_rate=schedule, parameters=parameters, weight_decay=settings.weight_decay
        )
        term_sums: dict[str, float] = {}
        epoch_means: list[float] = []
        steps, stopped_by = 0, "epochs"
        student.train()
        with contextlib.ExitStack() as stack:
            taps: tuple[BlockTaps, BlockTaps] | None = None
            if settings.uses_taps:
                taps = (
                    stack.enter_context(tap_blocks(student, self.layout)),
                    stack.enter_context(tap_blocks(self.teacher, self.layout)),
                )
            for _ in range(settings.epochs):
                order = rng.permutation(len(train))
                losses = []
                for start in range(0, len(train), settings.batch_size):
                    indices = order[start : start + settings.batch_size]
                    loss, terms = self._loss(paddle, student, indices, settings, taps, teacher_layers, projection)
                    loss.backward()
                    optimizer.step()
                    optimizer.clear_grad()
                    schedule.step()
                    steps += 1
                    losses.append(float(loss))
                    for name, value in terms.items():
                        term_sums[name] = term_sums.get(name, 0.0) + value
                    if settings.max_steps is not None and steps >= settings.max_steps:
                        stopped_by = "max_steps"
                    elif settings.max_seconds is not None and time.perf_counter() - started >= settings.max_seconds:
                        stopped_by = "max_seconds"
                    if stopped_by != "epochs":
                        break
                epoch_means.append(float(np.mean(losses)))
                if stopped_by != "epochs":
                    break
        student.eval()
        return DistillationLog(
            steps=steps,
            epochs=len(epoch_means),
            seconds=time.perf_counter() - started,
            stopped_by=stopped_by,
            loss_first_epoch=epoch_means[0],
            loss_last_epoch=epoch_means[-1],
            term_means={name: total / steps for name, total in term_sums.items()},
            hidden_projected=projection is not None,
        )

    def _hidden_projection(self, paddle: Any, student: Any) -> Any | None:
        """A learned map from the student's hidden width to the teacher's, or ``None`` when they are equal.

        The student's width is read from one forward pass on one training sample (no gradients).
        """
        student.eval()
        with tap_blocks(student, self.layout) as taps, paddle.no_grad():
            student(*[paddle.to_tensor(x) for x in self.train.take(slice(0, 1)).inputs])
        student.train()
        student_width, teacher_width = int(taps.hidden[0].shape[-1]), self.layout.hidden_size
        if student_width == teacher_width:
            return None
        return paddle.nn.Linear(student_width, teacher_width)

    def _loss(
        self,
        paddle: Any,
        student: Any,
        indices: np.ndarray,
        settings: DistillationSettings,
        taps: tuple[BlockTaps, BlockTaps] | None,
        teacher_layers: Sequence[int] | None,
        projection: Any | None,
    ) -> tuple[Any, dict[str, float]]:
        """The weighted loss of one batch (a tensor to back-propagate) and each term's value."""
        batch = self.train.take(indices)
        inputs = [paddle.to_tensor(x) for x in batch.inputs]
        if taps is not None:
            for tapped in taps:
                tapped.clear()
            with paddle.no_grad():
                self.teacher(*inputs)
        logits = student(*inputs)
        teacher_logits = paddle.to_tensor(self.teacher_logits[indices])
        terms = {
            "logit": logit_loss(paddle, logits, teacher_logits, settings.temperature),
            "ce": paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(batch.labels)),
        }
        loss = settings.alpha * terms["logit"] + (1.0 - settings.alpha) * terms["ce"]
        if taps is not None:
            student_taps, teacher_taps = taps
            if settings.hidden_weight > 0:
                terms["hidden"] = self._hidden_term(paddle, student_taps, teacher_taps, teacher_layers, projection)
                loss = loss + settings.hidden_weight * terms["hidden"]
            if settings.relation_weight > 0:
                terms["relation"] = relation_loss(
                    paddle,
                    (student_taps.queries[-1], student_taps.keys[-1], student_taps.values[-1]),
                    (teacher_taps.queries[-1], teacher_taps.keys[-1], teacher_taps.values[-1]),
                )
                loss = loss + settings.relation_weight * terms["relation"]
        return loss, {name: float(value) for name, value in terms.items()}

    def _hidden_term(
        self,
        paddle: Any,
        student_taps: BlockTaps,
        teacher_taps: BlockTaps,
        teacher_layers: Sequence[int] | None,
        projection: Any | None,
    ) -> Any:
        depth = len(student_taps.hidden)
        mapping = tuple(teacher_layers) if teacher_layers is not None else uniform_layer_map(depth, len(teacher_taps.hidden))
        if len(mapping) != depth:
            raise ValueError(f"teacher_layers {mapping} has {len(mapping)} entries; the student has {depth} layers")
        student_hidden = student_taps.hidden if projection is None else [projection(h) for h in student_taps.hidden]
        return hidden_loss(paddle, student_hidden, [teacher_taps.hidden[i] for i in mapping])
