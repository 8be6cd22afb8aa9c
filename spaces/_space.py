"""Search spaces: the contract, and the space of ``paddle.nn.TransformerEncoder`` models."""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from devicefit.spaces._candidate import PRECISIONS, Candidate, Precision
from devicefit.spaces._encoder import (
    EncoderStructure,
    Importance,
    find_encoder,
    materialize_encoder_student,
    measure_importance,
)

if TYPE_CHECKING:
    import optuna


class SearchSpace(abc.ABC):
    """What can be searched for one teacher, and how a point becomes a real model.

    Contract:
        - :meth:`suggest` draws a :class:`Candidate` from an Optuna trial. It registers the same parameter
          names with the same distributions on every call (samplers such as NSGA-II rely on it).
        - :meth:`materialize` builds the student as a ``paddle.nn.Layer`` in eval mode, without changing
          the teacher. Materializing :meth:`full_candidate` reproduces the teacher's outputs.
        - :meth:`params_for` is the inverse of :meth:`suggest`: the trial parameters that make
          :meth:`suggest` return that candidate (used to enqueue warm-start points).
        - :meth:`encode` maps a candidate to a fixed-length float vector (for predictors and distances).
    """

    @abc.abstractmethod
    def suggest(self, trial: optuna.Trial) -> Candidate:
        """Draw a candidate through ``trial.suggest_*``."""

    @abc.abstractmethod
    def materialize(self, candidate: Candidate) -> Any:
        """Build the student ``paddle.nn.Layer`` for ``candidate``."""

    @abc.abstractmethod
    def full_candidate(self) -> Candidate:
        """The candidate equal to the teacher (fp32)."""

    @abc.abstractmethod
    def params_for(self, candidate: Candidate) -> dict[str, Any]:
        """Trial parameters that :meth:`suggest` maps to ``candidate``."""

    @abc.abstractmethod
    def encode(self, candidate: Candidate) -> np.ndarray:
        """A fixed-length float vector describing ``candidate``."""

    def warm_start(self) -> list[Candidate]:
        """Informative first candidates (the teacher, uniform shrinkings). Empty by default."""
        return []


@dataclasses.dataclass(frozen=True)
class SpaceBounds:
    """Bounds of a Transformer space. ``None`` means "derived from the teacher".

    Attributes:
        min_depth: Fewest encoder layers a candidate keeps.
        min_heads: Fewest heads a kept layer keeps.
        ffn_step: Granularity of the FFN width (default: an eighth of the teacher's, at least 1).
        precisions: Precisions to search (each must also be one the target devices run).
    """

    min_depth: int = 1
    min_heads: int = 1
    ffn_step: int | None = None
    precisions: tuple[Precision, ...] = ("fp32",)

    def __post_init__(self) -> None:
        if self.min_depth < 1 or self.min_heads < 1:
            raise ValueError("min_depth and min_heads must be >= 1")
        if self.ffn_step is not None and self.ffn_step < 1:
            raise ValueError("ffn_step must be >= 1")
        if not self.precisions or any(p not in PRECISIONS for p in self.precisions):
            raise ValueError(f"precisions must be a non-empty subset of {PRECISIONS}")


class TransformerEncoderSpace(SearchSpace):
    """Depth, per-layer heads and per-layer FFN width of a model built on ``paddle.nn.TransformerEncoder``.

    Layers are chosen by importance (the ``depth`` most important are kept); heads and FFN neurons are
    kept by importance inside each layer. Importance is measured once, lazily, on the calibration batch.

    Args:
        teacher: The trained model (it is never modified).
        calibration_inputs: The model's inputs for one calibration batch.
        calibration_labels: Integer labels of that batch.
        bounds: Space bounds.
    """

    def __init__(
        self,
        teacher: Any,
        calibration_inputs: tuple[np.ndarray, ...],
        calibration_labels: np.ndarray,
        *,
        bounds: SpaceBounds = SpaceBounds(),
    ) -> None:
        self.teacher = teacher
        self.structure: EncoderStructure = find_encoder(teacher)
        self.bounds = bounds
        self._calibration = (calibration_inputs, calibration_labels)
        self._importance: Importance | None = None
        if bounds.min_depth > self.structure.num_layers or bounds.min_heads > self.structure.num_heads:
            raise ValueError(
                f"bounds {bounds} exceed the teacher ({self.structure.num_layers} layers, "
                f"{self.structure.num_heads} heads)"
            )

    @property
    def importance(self) -> Importance:
        """Head, neuron and layer importance of the teacher (measured on first use)."""
        if self._importance is None:
            inputs, labels = self._calibration
            self._importance = measure_importance(self.teacher, self.structure, inputs, labels)
        return self._importance

    @property
    def ffn_step(self) -> int:
        """FFN width granularity."""
        return self.bounds.ffn_step or max(1, self.structure.ffn_size // 8)

    def _ffn_choices_top(self) -> int:
        step = self.ffn_step
        return (self.structure.ffn_size // step) * step

    def suggest(self, trial: optuna.Trial) -> Candidate:
        s, b = self.structure, self.bounds
        depth = trial.suggest_int("depth", b.min_depth, s.num_layers)
        heads = [trial.suggest_int(f"heads_{i}", b.min_heads, s.num_heads) for i in range(s.num_layers)]
        ffn = [
            trial.suggest_int(f"ffn_{i}", self.ffn_step, self._ffn_choices_top(), step=self.ffn_step)
            for i in range(s.num_layers)
        ]
        precision: Precision = "fp32"
        if len(b.precisions) > 1:
            precision = trial.suggest_categorical("precision", list(b.precisions))
        elif b.precisions != ("fp32",):
            precision = b.precisions[0]
        layers = self.importance.layers_for_depth(depth)
        return Candidate(layers, tuple(heads[i] for i in layers), tuple(ffn[i] for i in layers), precision)

    def params_for(self, candidate: Candidate) -> dict[str, Any]:
        s = self.structure
        if candidate.layers != self.importance.layers_for_depth(candidate.depth):
            raise ValueError(
                f"this space keeps the {candidate.depth} most important layers "
                f"{self.importance.layers_for_depth(candidate.depth)}, not {candidate.layers}"
            )
        params: dict[str, Any] = {"depth": candidate.depth}
        top = self._ffn_choices_top()
        for i in range(s.num_layers):
            params[f"heads_{i}"] = s.num_heads
            params[f"ffn_{i}"] = top
        for i, heads, ffn in zip(candidate.layers, candidate.heads, candidate.ffn):
            params[f"heads_{i}"] = heads
            params[f"ffn_{i}"] = ffn
        if len(self.bounds.precisions) > 1:
            params["precision"] = candidate.precision
        return params

    def materialize(self, candidate: Candidate) -> Any:
        return materialize_encoder_student(self.teacher, self.structure, self.importance, candidate)

    def full_candidate(self) -> Candidate:
        return self.structure.full_candidate()

    def encode(self, candidate: Candidate) -> np.ndarray:
        s = self.structure
        vector = np.zeros(3 * s.num_layers + len(PRECISIONS))
        for i, heads, ffn in zip(candidate.layers, candidate.heads, candidate.ffn):
            vector[3 * i : 3 * i + 3] = (1.0, heads / s.num_heads, ffn / s.ffn_size)
        vector[3 * s.num_layers + PRECISIONS.index(candidate.precision)] = 1.0
        return vector

    def warm_start(self) -> list[Candidate]:
        """The teacher, then the teacher at half the FFN width, half the heads, and half the depth."""
        s = self.structure
        full = self.full_candidate()
        half_ffn = max(self.ffn_step, (s.ffn_size // 2 // self.ffn_step) * self.ffn_step)
        half_heads = max(self.bounds.min_heads, s.num_heads // 2)
        half_depth = max(self.bounds.min_depth, s.num_layers // 2)
        layers = self.importance.layers_for_depth(half_depth)
        starts = [
            full,
            dataclasses.replace(full, ffn=(half_ffn,) * s.num_layers),
            dataclasses.replace(full, heads=(half_heads,) * s.num_layers),
            Candidate(layers, (s.num_heads,) * half_depth, (self._ffn_choices_top(),) * half_depth),
        ]
        unique: dict[str, Candidate] = {}
        for candidate in starts:
            if candidate.ffn[0] <= self._ffn_choices_top():
                unique.setdefault(candidate.key(), candidate)
        return list(unique.values())
