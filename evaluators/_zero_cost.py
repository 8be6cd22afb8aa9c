"""Rung 1 of the accuracy ladder: zero-cost proxies, computed on the materialized student without training.

Two families, all computed on the student as :meth:`SearchSpace.materialize` built it (inherited weights):
  - agreement with the teacher on a calibration batch drawn from the training split: top-1 agreement and
    the KL divergence of the logits; and the validation metric of the untrained student (the figure
    reported as ``accuracy``);
  - architecture proxies from the zero-cost NAS literature (Abdelfattah et al., "Zero-Cost Proxies for
    Lightweight NAS", 2021): ``grad_norm`` (norm of the loss gradient), ``synflow`` (Tanaka et al.,
    2020: the synaptic flow of the absolute-valued network on an all-ones input), and ``naswot``
    (Mellor et al., 2021: log-determinant of the kernel of binary FFN activation codes over a batch).
How well each ranks candidates is measured by ``bench/proxy_fidelity.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from devicefit.evaluators._accuracy import AccuracyEvaluator, predict_logits
from devicefit.evaluators._data import Split, TaskData
from devicefit.evaluators._metrics import ACCURACY, Metric, MetricFunction, as_metric, teacher_agreement, teacher_kl
from devicefit.evaluators._taps import tap_blocks, teacher_layout
from devicefit.evaluators._types import AccuracyResult
from devicefit.spaces._layout import ModelLayout
from devicefit.spaces._paddle import import_paddle

ARCHITECTURE_PROXIES = ("grad_norm", "synflow", "naswot")


@dataclasses.dataclass(frozen=True)
class ZeroCostSettings:
    """What the zero-cost rung computes.

    Attributes:
        calibration_samples: Training samples in the calibration batch (agreement, KL, grad_norm).
        naswot_samples: Samples of the calibration batch used by ``naswot`` (its kernel is n x n).
        temperature: Softmax temperature of the KL divergence.
        proxies: Architecture proxies to compute, a subset of ``grad_norm``, ``synflow``, ``naswot``.
        seed: Seeds the choice of the calibration batch.
    """

    calibration_samples: int = 256
    naswot_samples: int = 64
    temperature: float = 1.0
    proxies: tuple[str, ...] = ARCHITECTURE_PROXIES
    seed: int = 0

    def __post_init__(self) -> None:
        if self.calibration_samples < 1 or self.naswot_samples < 2 or self.temperature <= 0:
            raise ValueError(f"invalid zero-cost settings: {self}")
        unknown = sorted(set(self.proxies) - set(ARCHITECTURE_PROXIES))
        if unknown:
            raise ValueError(f"unknown proxies {unknown}; known: {', '.join(ARCHITECTURE_PROXIES)}")


def calibration_batch(split: Split, samples: int, seed: int) -> Split:
    """``samples`` samples of ``split`` (all when fewer), drawn without replacement by ``seed``, in index order."""
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(len(split), size=min(samples, len(split)), replace=False))
    return split.take(indices)


def grad_norm(student: Any, batch: Split) -> float:
    """L2 norm of the gradient of the cross-entropy on ``batch`` over all parameters (student unchanged)."""
    paddle = import_paddle()
    student.eval()
    student.clear_gradients()
    try:
        logits = student(*[paddle.to_tensor(x) for x in batch.inputs])
        paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(batch.labels)).backward()
        total = sum(float(paddle.sum(p.grad * p.grad)) for p in student.parameters() if p.grad is not None)
    finally:
        student.clear_gradients()
    return float(np.sqrt(total))


def synflow(student: Any, batch: Split) -> float:
    """SynFlow: ``sum |theta * dR/dtheta|`` over all weights of the absolute-valued network, ``R`` its summed
    output on an all-ones input of one sample. Computed on a copy; returned as ``log10`` of the sum (it
    spans orders of magnitude). Layer norms make the network not positively homogeneous, so terms can be
    negative; their absolute values are summed, as the zero-cost proxy literature's code does.
    """
    paddle = import_paddle()
    clone = copy.deepcopy(student)
    clone.eval()
    with paddle.no_grad():
        for parameter in clone.parameters():
            parameter.set_value(paddle.abs(parameter))
    ones = [paddle.to_tensor(np.ones((1, *x.shape[1:]), dtype=x.dtype)) for x in batch.inputs]
    paddle.sum(clone(*ones)).backward()
    total = sum(
        float(paddle.sum(paddle.abs(p * p.grad)).astype("float64")) for p in clone.parameters() if p.grad is not None
    )
    return float(np.log10(total)) if total > 0 else float("-inf")


def naswot(student: Any, layout: ModelLayout, batch: Split) -> float:
    """NASWOT: ``log|K|`` with ``K[i, j]`` the number of FFN units (all layers, all tokens) on which samples
    ``i`` and ``j`` agree about the sign of the pre-activation. Higher means inputs are better separated.
    """
    paddle = import_paddle()
    student.eval()
    with tap_blocks(student, layout) as taps, paddle.no_grad():
        student(*[paddle.to_tensor(x) for x in batch.inputs])
        codes = np.concatenate(
            [(t.numpy() > 0).reshape(len(batch), -1) for t in taps.ffn_inner], axis=1
        ).astype(np.float64)
    kernel = codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T
    sign, logdet = np.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


class ZeroCostEvaluator(AccuracyEvaluator):
    """Rung 1: scores the student as materialized, with no training (the student is not changed).

    The reported ``accuracy`` is the metric of the untrained student on ``val``. The details hold the
    other proxies: ``calibration_agreement`` and ``calibration_kl`` (nats) against the teacher on the
    calibration batch, and each architecture proxy of ``settings.proxies``.

    Args:
        teacher: The trained model.
        data: The task's splits (``train`` for the calibration batch, ``val`` for the metric).
        settings: What to compute.
        metric: The figure reported as ``accuracy``.
        layout: Where the teacher's blocks are (the search space's ``layout``); found on first use by default.
    """

    def __init__(
        self,
        teacher: Any,
        data: TaskData,
        settings: ZeroCostSettings = ZeroCostSettings(),
        *,
        metric: Metric | str | MetricFunction = ACCURACY,
        layout: ModelLayout | None = None,
    ) -> None:
        self.teacher = teacher
        self.data = data
        self.settings = settings
        self.metric = as_metric(metric)
        self._batch: Split | None = None
        self._teacher_batch_logits: np.ndarray | None = None
        self._layout = layout

    @property
    def fidelity(self) -> str:
        return "zero-cost"

    @property
    def batch(self) -> Split:
        """The calibration batch (drawn on first use)."""
        if self._batch is None:
            self._batch = calibration_batch(self.data.train, self.settings.calibration_samples, self.settings.seed)
        return self._batch

    @property
    def teacher_batch_logits(self) -> np.ndarray:
        """The teacher's logits on the calibration batch."""
        if self._teacher_batch_logits is None:
            self._teacher_batch_logits = predict_logits(self.teacher, self.batch)
        return self._teacher_batch_logits

    @property
    def layout(self) -> ModelLayout:
        """The teacher's layout, where NASWOT taps the FFN (found on first use)."""
        if self._layout is None:
            self._layout = teacher_layout(self.teacher)
        return self._layout

    def evaluate(self, student: Any, *, teacher_layers: Sequence[int] | None = None) -> AccuracyResult:
        started = time.perf_counter()
        batch_logits = predict_logits(student, self.batch)
        details: dict[str, Any] = {
            "calibration_agreement": teacher_agreement(batch_logits, self.teacher_batch_logits),
            "calibration_kl": teacher_kl(batch_logits, self.teacher_batch_logits, self.settings.temperature),
        }
        proxies = self.settings.proxies
        if "grad_norm" in proxies:
            details["grad_norm"] = grad_norm(student, self.batch)
        if "synflow" in proxies:
            details["synflow"] = synflow(student, self.batch)
        if "naswot" in proxies:
            details["naswot"] = naswot(student, self.layout, self.batch.take(slice(0, self.settings.naswot_samples)))
        value = self.metric(predict_logits(student, self.data.val), self.data.val.labels)
        return AccuracyResult(value, "val", self.fidelity, time.perf_counter() - started, details, self.metric.name)
