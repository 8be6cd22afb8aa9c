"""Search spaces: the contract, and the joint width/depth, pruning and bit-width space of Transformers."""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from devicefit.spaces._adapters import DEFAULT_ADAPTERS
from devicefit.spaces._candidate import (
    CALIBRATIONS,
    PRECISIONS,
    WEIGHT_ONLY_BITS,
    Calibration,
    Candidate,
    Precision,
    WeightOnlyBits,
)
from devicefit.spaces._export import Artifact
from devicefit.spaces._importance import Importance, measure_importance
from devicefit.spaces._layout import ModelAdapter, ModelLayout, UnsupportedModelError, find_layout
from devicefit.spaces._materialize import (
    CutPlan,
    check_fits,
    cut_model,
    plan_for,
    prune_unstructured,
)
from devicefit.spaces._paddle import import_paddle
from devicefit.spaces._precision import deploy_candidate
from devicefit.spaces._surgery import get_parameter, join

if TYPE_CHECKING:
    import optuna

#: Outputs of a permuted model may differ from the teacher's by float rounding only (absolute, logits).
PERMUTATION_TOLERANCE = 1e-4
#: Calibration samples used by the permutation self-check of a layout.
CHECK_SAMPLES = 8


class SearchSpace(abc.ABC):
    """What can be searched for one teacher, and how a point becomes a real, deployable model.

    Contract:
        - :meth:`suggest` draws a :class:`Candidate` from an Optuna trial. It registers the same parameter
          names with the same distributions on every call (samplers such as NSGA-II rely on it).
        - :meth:`materialize` builds the student as a ``paddle.nn.Layer`` in eval mode, in fp32, without
          changing the teacher. Materializing :meth:`full_candidate` reproduces the teacher's outputs.
        - :meth:`deploy` exports a (fine-tuned) student as the candidate deploys it: an :class:`Artifact`
          whose precision tells the converter what to do, and whose ``scoring_dir`` program reproduces the
          deployed numerics in Paddle.
        - :meth:`params_for` is the inverse of :meth:`suggest`: the trial parameters that make
          :meth:`suggest` return that candidate (used to enqueue warm-start points).
        - :meth:`encode` maps a candidate to a fixed-length float vector (for predictors and distances).
        - :attr:`finetunes` says whether a materialized student can be fine-tuned (trained in dygraph); when it
          is false, the fit scores students as built (rung ``no-finetune``) and never trains them.
    """

    #: Whether materialized students can be fine-tuned (see the contract).
    finetunes: bool = True

    @abc.abstractmethod
    def suggest(self, trial: optuna.Trial) -> Candidate:
        """Draw a candidate through ``trial.suggest_*``."""

    @abc.abstractmethod
    def materialize(self, candidate: Candidate) -> Any:
        """Build the student ``paddle.nn.Layer`` for ``candidate``."""

    @abc.abstractmethod
    def deploy(self, student: Any, candidate: Candidate, input_spec: list[Any], directory: Path) -> Artifact:
        """Export ``student`` (materialized from ``candidate``, maybe fine-tuned) as the candidate deploys it."""

    @abc.abstractmethod
    def full_candidate(self) -> Candidate:
        """The candidate equal to the teacher (fp32)."""

    @abc.abstractmethod
    def params_for(self, candidate: Candidate) -> dict[str, Any]:
        """Trial parameters that :meth:`suggest` maps to ``candidate``."""

    @abc.abstractmethod
    def encode(self, candidate: Candidate) -> np.ndarray:
        """A fixed-length float vector describing ``candidate``."""

    def encode_params(self, params: dict[str, Any]) -> np.ndarray:
        """:meth:`encode` of the candidate that trial parameters ``params`` make (what a model-based sampler
        compares: parameters that make the same candidate encode the same)."""
        import optuna

        return self.encode(self.suggest(optuna.trial.FixedTrial(params)))

    def warm_start(self) -> list[Candidate]:
        """Informative first candidates (the teacher, uniform shrinkings). Empty by default."""
        return []

    def describe(self) -> str:
        """One line about what is searched, for banners."""
        return type(self).__name__


class BoundsError(ValueError):
    """The user's space bounds do not fit the teacher (e.g. more layers kept than it has)."""


@dataclasses.dataclass(frozen=True)
class SpaceBounds:
    """Which dimensions a Transformer space searches, and their bounds. ``None`` means "from the teacher".

    Every field has a YAML-friendly type, so a user's config can carry it (``load_yaml(path, SpaceBounds)``).

    Attributes:
        search_depth: Search which blocks are kept (by importance); ``False`` keeps every block.
        min_depth: Fewest blocks a candidate keeps.
        search_heads: Search the heads kept per block; ``False`` keeps every head.
        min_heads: Fewest heads a kept block keeps.
        search_ffn: Search the FFN width per block; ``False`` keeps it whole.
        ffn_step: Granularity of the FFN width (default: an eighth of the teacher's, at least 1).
        min_ffn: Narrowest FFN width (default: ``ffn_step``).
        search_hidden: Search the hidden width: ``True`` requires it (an error for a model whose width cannot
            be cut), ``False`` never, ``None`` where the model allows it.
        hidden_step: Granularity of the hidden width (default: the head width).
        min_hidden: Narrowest hidden width (default: half the teacher's, rounded up to ``hidden_step``).
        sparsities: Unstructured sparsity ratios to choose from (``0.0`` is dense).
        precisions: Precisions to search (each must also be one the target devices run).
        calibrations: Calibration algorithms to choose from for ``int8``. ``KL`` is slow: 436 s for a 2-block,
            d=32 model on this project's machine, where ``abs_max``, ``avg``, ``hist`` and ``mse`` took 5 s.
        max_fp32_layers: An ``int8`` candidate may keep up to this many of its blocks (the most important)
            in fp32: mixed precision per block. ``0`` quantizes every block.
        weight_only_bits: Weight-only quantization widths offered to ``fp32`` candidates (8, 16); empty: none.
    """

    search_depth: bool = True
    min_depth: int = 1
    search_heads: bool = True
    min_heads: int = 1
    search_ffn: bool = True
    ffn_step: int | None = None
    min_ffn: int | None = None
    search_hidden: bool | None = None
    hidden_step: int | None = None
    min_hidden: int | None = None
    sparsities: tuple[float, ...] = (0.0,)
    precisions: tuple[Precision, ...] = ("fp32",)
    calibrations: tuple[Calibration, ...] = ("avg",)
    max_fp32_layers: int = 0
    weight_only_bits: tuple[WeightOnlyBits, ...] = ()

    def __post_init__(self) -> None:
        if self.min_depth < 1 or self.min_heads < 1:
            raise ValueError("min_depth and min_heads must be >= 1")
        for name in ("ffn_step", "min_ffn", "hidden_step", "min_hidden"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not self.precisions or any(p not in PRECISIONS for p in self.precisions):
            raise ValueError(f"precisions must be a non-empty subset of {PRECISIONS}, got {self.precisions}")
        if len(set(self.precisions)) != len(self.precisions):
            raise ValueError(f"precisions are listed twice: {self.precisions}")
        if not self.calibrations or any(c not in CALIBRATIONS for c in self.calibrations):
            raise ValueError(f"calibrations must be a non-empty subset of {CALIBRATIONS}, got {self.calibrations}")
        if not self.sparsities or any(not 0.0 <= s < 1.0 for s in self.sparsities):
            raise ValueError(f"sparsities must be a non-empty list of ratios in [0, 1), got {self.sparsities}")
        if any(b not in WEIGHT_ONLY_BITS for b in self.weight_only_bits):
            raise ValueError(f"weight_only_bits must be a subset of {WEIGHT_ONLY_BITS}, got {self.weight_only_bits}")
        if self.max_fp32_layers < 0:
            raise ValueError(f"max_fp32_layers must be >= 0, got {self.max_fp32_layers}")


class TransformerSpace(SearchSpace):
    """The joint space of a Transformer teacher: depth, heads, FFN width, hidden width, sparsity, bit-width.

    The teacher is mapped onto the common block structure by the first adapter that recognizes it
    (BERT-style, ViT, ``paddle.nn.TransformerEncoder``, or the caller's own :class:`ModelAdapter`). Blocks
    are chosen by importance (the ``depth`` most important are kept); heads, FFN neurons and hidden
    channels are kept by importance. Importance is measured once, lazily, on the calibration batch, which
    also calibrates int8 candidates.

    On construction the layout is checked on a few calibration samples: a student that keeps every head,
    neuron and hidden channel in a random order must compute what the teacher computes, and a student one
    hidden step narrower must run. A failure of the head/FFN check is an :class:`UnsupportedModelError`
    (the adapter is wrong for this model); a failure of the hidden check turns the hidden width off for
    this model, with the reason in ``layout.hidden_unavailable`` (an error when it was required).

    Args:
        teacher: The trained model (it is never modified).
        calibration_inputs: The model's inputs for one calibration batch.
        calibration_labels: Integer labels of that batch.
        bounds: Which dimensions are searched, and their bounds.
        adapters: The adapters tried, in order; by default the built-in families.
        seed: Seeds the layout self-check's permutations.
    """

    def __init__(
        self,
        teacher: Any,
        calibration_inputs: tuple[np.ndarray, ...],
        calibration_labels: np.ndarray,
        *,
        bounds: SpaceBounds = SpaceBounds(),
        adapters: tuple[ModelAdapter, ...] = DEFAULT_ADAPTERS,
        seed: int = 0,
    ) -> None:
        self.teacher = teacher
        self.adapter, layout = find_layout(teacher, tuple(adapters))
        self.bounds = bounds
        self.calibration_inputs = calibration_inputs
        self.calibration_labels = calibration_labels
        self._importance: Importance | None = None
        if bounds.min_depth > layout.num_layers:
            raise BoundsError(f"min_depth {bounds.min_depth} exceeds the teacher's {layout.num_layers} layers")
        if bounds.min_heads > layout.num_heads:
            raise BoundsError(f"min_heads {bounds.min_heads} exceeds the teacher's {layout.num_heads} heads per layer")
        self.layout = self._checked_layout(layout, seed)
        if bounds.search_hidden and self.layout.hidden_unavailable is not None:
            raise BoundsError(
                f"search_hidden is required but this {layout.family} model's hidden width cannot be cut: "
                f"{self.layout.hidden_unavailable}"
            )

    # -- the layout and its check ---------------------------------------------------------------------

    @property
    def structure(self) -> ModelLayout:
        """The teacher's layout (the first version's name for it)."""
        return self.layout

    @staticmethod
    def _run(model: Any, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        paddle = import_paddle()
        with paddle.no_grad():
            return model(*[paddle.to_tensor(x) for x in inputs]).numpy()

    def _reproduces(self, layout: ModelLayout, plan: CutPlan, inputs: tuple[np.ndarray, ...], expected: np.ndarray) -> bool:
        got = self._run(cut_model(self.teacher, self.adapter, layout, plan), inputs)
        return got.shape == expected.shape and bool(np.allclose(got, expected, atol=PERMUTATION_TOLERANCE, rtol=0))

    def _checked_layout(self, layout: ModelLayout, seed: int) -> ModelLayout:
        rng = np.random.default_rng(seed)
        inputs = tuple(x[:CHECK_SAMPLES] for x in self.calibration_inputs)
        expected = self._run(self.teacher, inputs)
        layers = tuple(range(layout.num_layers))
        plan = CutPlan(
            layers=layers,
            head_orders=tuple(rng.permutation(layout.num_heads) for _ in layers),
            neuron_orders=tuple(rng.permutation(layout.ffn_size) for _ in layers),
        )
        if not self._reproduces(layout, plan, inputs, expected):
            raise UnsupportedModelError(
                f"the {layout.family} layout found in {type(self.teacher).__name__} is wrong: reordering the heads "
                f"and FFN neurons of {layout.blocks_path} changed the outputs"
            )
        if self.bounds.search_hidden is False or layout.hidden_unavailable is not None:
            return layout
        order = rng.permutation(layout.hidden_size)
        narrower = max(1, layout.hidden_size - (self.bounds.hidden_step or layout.head_dim))
        try:
            reproduced = self._reproduces(layout, dataclasses.replace(plan, hidden_order=order), inputs, expected)
            reason = "reordering the hidden channels changed the outputs"
            if reproduced:  # a permutation keeps the width: also check that a narrower model still runs
                narrow_plan = dataclasses.replace(plan, hidden_order=order[:narrower])
                self._run(cut_model(self.teacher, self.adapter, layout, narrow_plan), inputs)
        except Exception as exc:  # noqa: BLE001  (any failure means the width cannot be cut safely)
            reproduced = False
            reason = f"cutting it breaks the forward ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]})"
        if reproduced:
            return layout
        return dataclasses.replace(
            layout, hidden_unavailable=f"{reason}; some layer or the forward uses the width in a way devicefit cannot place"
        )

    @property
    def importance(self) -> Importance:
        """Head, neuron, hidden-channel and block importance of the teacher (measured on first use)."""
        if self._importance is None:
            self._importance = measure_importance(
                self.teacher, self.adapter, self.layout, self.calibration_inputs, self.calibration_labels
            )
        return self._importance

    # -- dimensions -----------------------------------------------------------------------------------

    @property
    def ffn_step(self) -> int:
        """FFN width granularity."""
        return self.bounds.ffn_step or max(1, self.layout.ffn_size // 8)

    def _ffn_top(self) -> int:
        return (self.layout.ffn_size // self.ffn_step) * self.ffn_step

    def _ffn_bottom(self) -> int:
        step = self.ffn_step
        wanted = -(-(self.bounds.min_ffn or step) // step) * step  # rounded up to a multiple of the step
        return min(self._ffn_top(), max(step, wanted))

    @property
    def hidden_searched(self) -> bool:
        """Whether the hidden width is a dimension of this space."""
        return self.bounds.search_hidden is not False and self.layout.hidden_unavailable is None

    @property
    def hidden_step(self) -> int:
        """Hidden width granularity."""
        return self.bounds.hidden_step or self.layout.head_dim

    def _hidden_choices(self) -> tuple[int, int]:
        step, full = self.hidden_step, self.layout.hidden_size
        top = (full // step) * step
        wanted = self.bounds.min_hidden or (full + 1) // 2
        bottom = min(top, max(step, -(-wanted // step) * step))
        return bottom, top

    def _smallest(self, full: Candidate) -> Candidate:
        """The smallest candidate the bounds allow, at the cheapest precision searched (int8 if searched)."""
        layout, b = self.layout, self.bounds
        depth = max(1, b.min_depth) if b.search_depth else layout.num_layers
        layers = self.importance.layers_for_depth(depth) if b.search_depth else full.layers
        heads = (b.min_heads,) * depth if b.search_heads else full.heads[:depth]
        ffn = (self._ffn_bottom(),) * depth if b.search_ffn else full.ffn[:depth]
        hidden = full.hidden
        if self.hidden_searched:
            low = self._hidden_choices()[0]
            if low < layout.hidden_size:
                hidden = low
        if self._int8_searched():
            return dataclasses.replace(full, layers=layers, heads=heads, ffn=ffn, hidden=hidden, precision="int8",
                                       calibration=b.calibrations[0])
        return dataclasses.replace(full, layers=layers, heads=heads, ffn=ffn, hidden=hidden)

    def _int8_searched(self) -> bool:
        return "int8" in self.bounds.precisions

    def _max_fp32_layers(self) -> int:
        return min(self.bounds.max_fp32_layers, self.layout.num_layers - 1)

    # -- the contract ---------------------------------------------------------------------------------

    def suggest(self, trial: optuna.Trial) -> Candidate:
        layout, b = self.layout, self.bounds
        n = layout.num_layers
        depth = trial.suggest_int("depth", b.min_depth, n) if b.search_depth else n
        heads = [
            trial.suggest_int(f"heads_{i}", b.min_heads, layout.num_heads) if b.search_heads else layout.num_heads
            for i in range(n)
        ]
        ffn = [
            trial.suggest_int(f"ffn_{i}", self._ffn_bottom(), self._ffn_top(), step=self.ffn_step)
            if b.search_ffn
            else layout.ffn_size
            for i in range(n)
        ]
        hidden: int | None = None
        if self.hidden_searched:
            low, high = self._hidden_choices()
            drawn = trial.suggest_int("hidden", low, high, step=self.hidden_step)
            hidden = None if drawn == layout.hidden_size else drawn
        sparsity = b.sparsities[0]
        if len(b.sparsities) > 1:
            sparsity = float(trial.suggest_categorical("sparsity", list(b.sparsities)))
        precision: Precision = b.precisions[0]
        if len(b.precisions) > 1:
            precision = trial.suggest_categorical("precision", list(b.precisions))
        calibration: Calibration = b.calibrations[0]
        fp32_count = 0
        if self._int8_searched():  # drawn on every trial, used by int8 ones (the parameter set never changes)
            if len(b.calibrations) > 1:
                calibration = trial.suggest_categorical("calibration", list(b.calibrations))
            if self._max_fp32_layers() > 0:
                fp32_count = trial.suggest_int("fp32_layers", 0, self._max_fp32_layers())
        weight_only = 0
        if b.weight_only_bits and "fp32" in b.precisions:
            weight_only = int(trial.suggest_categorical("weight_only_bits", [0, *b.weight_only_bits]))
        layers = self.importance.layers_for_depth(depth)
        return self._candidate(layers, heads, ffn, hidden, sparsity, precision, calibration, fp32_count, weight_only)

    def _candidate(
        self,
        layers: tuple[int, ...],
        heads: list[int],
        ffn: list[int],
        hidden: int | None,
        sparsity: float,
        precision: Precision,
        calibration: Calibration,
        fp32_count: int,
        weight_only: int,
    ) -> Candidate:
        """The canonical candidate for drawn values: settings that do not apply to the precision are dropped."""
        int8 = precision == "int8"
        fp32_layers = self.importance.most_important(layers, min(fp32_count, len(layers) - 1)) if int8 else ()
        return Candidate(
            layers=layers,
            heads=tuple(heads[i] for i in layers),
            ffn=tuple(ffn[i] for i in layers),
            precision=precision,
            hidden=hidden,
            sparsity=sparsity,
            calibration=calibration if int8 else None,
            fp32_layers=fp32_layers,
            weight_only_bits=weight_only if (weight_only and precision == "fp32") else None,  # type: ignore[arg-type]
        )

    def params_for(self, candidate: Candidate) -> dict[str, Any]:
        layout, b = self.layout, self.bounds
        n = layout.num_layers
        if candidate.layers != self.importance.layers_for_depth(candidate.depth):
            raise ValueError(
                f"this space keeps the {candidate.depth} most important layers "
                f"{self.importance.layers_for_depth(candidate.depth)}, not {candidate.layers}"
            )
        kept_heads = dict(zip(candidate.layers, candidate.heads))
        kept_ffn = dict(zip(candidate.layers, candidate.ffn))
        heads = [kept_heads.get(i, layout.num_heads) if b.search_heads else layout.num_heads for i in range(n)]
        ffn = [kept_ffn.get(i, self._ffn_top()) if b.search_ffn else layout.ffn_size for i in range(n)]
        params: dict[str, Any] = {}
        if b.search_depth:
            params["depth"] = candidate.depth
        for i in range(n):
            if b.search_heads:
                params[f"heads_{i}"] = heads[i]
            if b.search_ffn:
                params[f"ffn_{i}"] = ffn[i]
        hidden = candidate.hidden if self.hidden_searched else None
        if self.hidden_searched:
            params["hidden"] = candidate.hidden or layout.hidden_size
        sparsity = candidate.sparsity if len(b.sparsities) > 1 else b.sparsities[0]
        if len(b.sparsities) > 1:
            params["sparsity"] = candidate.sparsity
        precision = candidate.precision if len(b.precisions) > 1 else b.precisions[0]
        if len(b.precisions) > 1:
            params["precision"] = candidate.precision
        calibration = b.calibrations[0]
        fp32_count = 0
        if self._int8_searched():
            if len(b.calibrations) > 1:
                calibration = candidate.calibration or b.calibrations[0]
                params["calibration"] = calibration
            if self._max_fp32_layers() > 0:
                fp32_count = len(candidate.fp32_layers)
                params["fp32_layers"] = fp32_count
        weight_only = 0
        if b.weight_only_bits and "fp32" in b.precisions:
            weight_only = candidate.weight_only_bits or 0
            params["weight_only_bits"] = weight_only
        depth = candidate.depth if b.search_depth else n
        expected = self._candidate(
            self.importance.layers_for_depth(depth), heads, ffn, hidden, sparsity, precision, calibration, fp32_count, weight_only
        )
        if expected != candidate:
            raise ValueError(f"this space cannot suggest {candidate.describe()} (the closest is {expected.describe()})")
        return params

    def materialize(self, candidate: Candidate) -> Any:
        check_fits(self.layout, candidate)
        student = cut_model(self.teacher, self.adapter, self.layout, plan_for(candidate, self.importance))
        if candidate.sparsity > 0:
            prune_unstructured(student, self.layout, candidate.sparsity)
        return student

    def fp32_weight_names(self, student: Any, candidate: Candidate) -> list[str]:
        """Names of the student's projection weights that stay fp32 in an int8 candidate (mixed precision).

        They are the weights' paths in the student (``encoder.layers.0.linear1.weight``): the exported program
        names its weights so (``export_inference_model``), which keeps exports byte-identical across processes.
        """
        names = []
        block = self.layout.block
        for position, layer in enumerate(candidate.layers):
            if layer in candidate.fp32_layers:
                base = self.layout.block_path(position)
                for role in ("query", "key", "value", "attention_output", "ffn_in", "ffn_out"):
                    path = join(base, block.projection(role), "weight")
                    get_parameter(student, path)  # raises if the layout does not match the student
                    names.append(path)
        return names

    def deploy(self, student: Any, candidate: Candidate, input_spec: list[Any], directory: Path) -> Artifact:
        return deploy_candidate(
            student,
            candidate,
            input_spec,
            directory,
            calibration_inputs=self.calibration_inputs,
            fp32_weights=self.fp32_weight_names(student, candidate),
        )

    def full_candidate(self) -> Candidate:
        return self.layout.full_candidate()

    def encode(self, candidate: Candidate) -> np.ndarray:
        """Per teacher block (kept, heads, FFN width as fractions), then hidden width fraction, sparsity,
        precision one-hot, calibration one-hot, fraction of kept blocks in fp32, weight-only bits / 32."""
        layout = self.layout
        n = layout.num_layers
        vector = np.zeros(3 * n + 2 + len(PRECISIONS) + len(CALIBRATIONS) + 2)
        for i, heads, ffn in zip(candidate.layers, candidate.heads, candidate.ffn):
            vector[3 * i : 3 * i + 3] = (1.0, heads / layout.num_heads, ffn / layout.ffn_size)
        at = 3 * n
        vector[at] = (candidate.hidden or layout.hidden_size) / layout.hidden_size
        vector[at + 1] = candidate.sparsity
        at += 2
        vector[at + PRECISIONS.index(candidate.precision)] = 1.0
        at += len(PRECISIONS)
        if candidate.calibration is not None:
            vector[at + CALIBRATIONS.index(candidate.calibration)] = 1.0
        at += len(CALIBRATIONS)
        vector[at] = len(candidate.fp32_layers) / candidate.depth
        vector[at + 1] = (candidate.weight_only_bits or 0) / 32.0
        return vector

    def warm_start(self) -> list[Candidate]:
        """The teacher; then a grid: one middle-width shrinking per depth level (up to four, shallowest
        first) and precision searched; then the smallest candidate, and the teacher in int8. Only what the
        bounds allow.

        Why a grid over depth and precision: on a phone, latency is set mostly by depth and precision (a
        per-kernel cost dominates small Transformers), size by width and precision, and which precision is
        cheap is the device's business (the seeded Snapdragon 865 CPU runs this ViT's int8 slower than its
        fp32). ``bench/search_efficiency.py`` measured the previous start (the teacher, its int8, the smallest,
        then four one-dimension halvings in int8) at 36% of the reference hypervolume after five trials, where
        five random candidates had 75%: four of its seven points were int8 at full depth, slower than the
        fp32 teacher on that phone and so outside the reference box.
        """
        layout, b = self.layout, self.bounds
        base = "fp32" if "fp32" in b.precisions else b.precisions[0]
        full = dataclasses.replace(
            self.full_candidate(),
            ffn=(self._ffn_top() if b.search_ffn else layout.ffn_size,) * layout.num_layers,
            precision=base,
            calibration=b.calibrations[0] if base == "int8" else None,
            sparsity=b.sparsities[0],
        )
        starts = [full]
        for depth in self._warm_depths():
            for precision in b.precisions:
                starts.append(self._middle(full, depth, precision))
        starts.append(self._smallest(full))
        if self._int8_searched() and full.precision != "int8":
            starts.append(dataclasses.replace(full, precision="int8", calibration=b.calibrations[0]))
        unique: dict[str, Candidate] = {}
        for candidate in starts:
            unique.setdefault(candidate.key(), candidate)
        return list(unique.values())

    def _warm_depths(self) -> list[int]:
        """Up to four depths, evenly spread from the shallowest allowed to the teacher's, ascending."""
        n, b = self.layout.num_layers, self.bounds
        if not b.search_depth:
            return [n]
        low = max(1, b.min_depth)
        levels = min(4, n - low + 1)
        return sorted({int(round(d)) for d in np.linspace(low, n, levels)})

    def _middle(self, full: Candidate, depth: int, precision: Precision) -> Candidate:
        """``depth`` most important blocks at the middle of each searched width range, at ``precision``."""
        layout, b = self.layout, self.bounds
        layers = self.importance.layers_for_depth(depth) if b.search_depth else full.layers
        heads = full.heads[:depth]
        if b.search_heads:
            heads = (-(-(b.min_heads + layout.num_heads) // 2),) * depth
        ffn = full.ffn[:depth]
        if b.search_ffn:
            step = self.ffn_step
            middle = (self._ffn_bottom() + self._ffn_top()) // 2
            ffn = (max(self._ffn_bottom(), -(-middle // step) * step),) * depth
        hidden = full.hidden
        if self.hidden_searched:
            low, high = self._hidden_choices()
            step = self.hidden_step
            middle = max(low, -(-((low + high) // 2) // step) * step)
            hidden = None if middle == layout.hidden_size else middle
        return dataclasses.replace(full, layers=layers, heads=heads, ffn=ffn, hidden=hidden, precision=precision,
                                   calibration=b.calibrations[0] if precision == "int8" else None)

    def describe(self) -> str:
        layout, b = self.layout, self.bounds
        parts = [f"{layout.family} ({layout.num_layers} layers, {layout.num_heads} heads, hidden {layout.hidden_size}, FFN {layout.ffn_size})"]
        parts.append(f"depth {b.min_depth}..{layout.num_layers}" if b.search_depth else "depth fixed")
        parts.append(f"heads {b.min_heads}..{layout.num_heads} per layer" if b.search_heads else "heads fixed")
        parts.append(f"FFN {self._ffn_bottom()}..{self._ffn_top()} step {self.ffn_step}" if b.search_ffn else "FFN fixed")
        if self.hidden_searched:
            low, high = self._hidden_choices()
            parts.append(f"hidden {low}..{high} step {self.hidden_step}")
        elif b.search_hidden is not False and layout.hidden_unavailable is not None:
            parts.append(f"hidden fixed ({layout.hidden_unavailable})")
        if len(b.sparsities) > 1 or b.sparsities[0]:
            parts.append("sparsity " + "/".join(f"{s:g}" for s in b.sparsities))
        precision = "precision " + "/".join(b.precisions)
        if self._int8_searched():
            precision += f" (int8 calibration {'/'.join(b.calibrations)}"
            precision += f", up to {self._max_fp32_layers()} layers fp32)" if self._max_fp32_layers() else ")"
        parts.append(precision)
        if b.weight_only_bits:
            parts.append("weight-only " + "/".join(f"int{bits}" for bits in b.weight_only_bits))
        return ", ".join(parts)


#: The name of the first version, kept for existing callers.
TransformerEncoderSpace = TransformerSpace

