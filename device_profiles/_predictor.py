"""The kernel-level latency predictor: its parameters (the ``predictor`` section of a profile) and its math.

A model's predicted latency on a device is

    latency_us = overhead_us
               + sum over kernels k outside NNAdapter subgraphs and ops k inside them of
                     shape_factor(k) * (  call_us[key(k)] + slice_us[key(k)] * slices(k)
                                        + mflop_us[key(k)] * mflop(k) + in_kib_us[key(k)] * in_kib(k)
                                        + out_kib_us[key(k)] * out_kib(k) + weight_kib_us[key(k)] * weight_kib(k))
               + sum over NNAdapter subgraphs g of  subgraph.call_us + subgraph.kib_us * kib crossing(g)

The linear part is fitted per cost key; ``shape_factor(k)`` (1 for most kernels) corrects it where the
cost per unit depends on the shape (a GEMM with few rows is slower per operation than a large one): it is
interpolated from the factors measured at the probe shapes of the same key (:class:`ShapeFactorRule`).

with ``key(k) = <target>/<op type>/<precision>`` and the features of
:mod:`devicefit.device_profiles._features`. Every coefficient is plain data in the profile's YAML,
with where it came from (:class:`Provenance`). A kernel whose key has no coefficients is an error
(:class:`UncoveredKernelError`), never a free kernel, with one documented exception: the small data-movement
ops of :data:`STAND_IN_OPS` (a ``zeros_like``, an ``arange``, an ``unsqueeze``) are priced, on the same target,
by the coefficients of an op that does the same kind of work, and the prediction lists every such stand-in
(:attr:`Prediction.stand_ins`).

Prediction is pure Python over the kernel list: no Paddle, no Paddle Lite, well under a millisecond for
a Transformer of a few hundred kernels.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from devicefit.device_profiles._features import FEATURES, KernelFeatures, kernel_features, shape_signature
from devicefit.device_profiles._shapes import ShapedProgram

#: Coefficient field names of :class:`KernelCost`, one per feature, in feature order.
COEFFICIENTS = tuple(f"{name[:-1] if name.endswith('s') else name}_us" for name in FEATURES)
_KEY = re.compile(r"^[a-z0-9_]+/[a-z0-9_]+(\.[a-z0-9_]+)?/[a-z0-9_]+$")


class UncoveredKernelError(LookupError):
    """A model has kernels for which the profile's predictor has no coefficients (the message lists them)."""


#: Small data-movement ops that a profile may lack coefficients for (neither the calibration sweep nor the
#: seeding produces them) -> ops of the same kind of work whose coefficients price them, in order of preference:
#: writing a small constant or index tensor (``fill_any_like`` of ``zeros_like``, ``range`` of ``arange``), only
#: reinterpreting a shape (``unsqueeze``, ``squeeze``, ``flatten``), or one pass over a tensor with a multiply
#: per element (``calib``, the conversion between float and int8 kernels, priced as a ``scale``). Only the
#: target of the kernel is searched (a host kernel is never priced by an accelerator's, nor the reverse).
STAND_IN_OPS: Mapping[str, tuple[str, ...]] = {
    "calib": ("scale",),
    "calib_once": ("scale",),
    "fill_any_like": ("fill_constant", "expand_v2"),
    "range": ("fill_constant",),
    "unsqueeze": ("reshape2", "reshape"),
    "unsqueeze2": ("reshape2", "reshape"),
    "squeeze": ("reshape2", "reshape"),
    "squeeze2": ("reshape2", "reshape"),
    "flatten_contiguous_range": ("reshape2", "reshape"),
}
#: Variants of :func:`~devicefit.device_profiles._features.kernel_variant` that profiles made before them do not
#: have -> the variant that priced those kernels then (a convolution's bias add was an ``elementwise_add.bcast``,
#: the patch embedding's transpose a ``transpose2``): such a profile still prices them (with today's features),
#: and names the stand-in.
VARIANT_STAND_INS: Mapping[str, str] = {"bcast_inner": "bcast", "inner": ""}


def older_variant(op: str) -> str | None:
    """``<op type>[.<variant>]`` that priced ``op`` in profiles made before its variant existed (see
    :data:`VARIANT_STAND_INS`): ``elementwise_add.bcast_inner`` -> ``elementwise_add.bcast``; None for the rest."""
    base, _, variant = op.partition(".")
    if variant not in VARIANT_STAND_INS:
        return None
    return f"{base}.{VARIANT_STAND_INS[variant]}".rstrip(".")


@dataclasses.dataclass(frozen=True)
class KernelCost:
    """Coefficients of one cost key (microseconds per unit of each feature of ``_features``).

    Attributes:
        call_us: Microseconds per kernel launch.
        slice_us: Microseconds per inner problem (GEMM of a batch, row of a softmax, ...).
        mflop_us: Microseconds per million arithmetic operations.
        in_kib_us: Microseconds per KiB of activations read.
        out_kib_us: Microseconds per KiB written.
        weight_kib_us: Microseconds per KiB of weights read.
        models: Calibration models in which kernels of this key were measured (0: not measured, seeded).
        shape_factors: Measured corrections of the linear cost at given kernel shapes: each entry is a shape
            signature (``log2`` dimensions, see ``_features.shape_signature``) followed by the factor that
            the measured cost of a kernel of that shape was above (>1) or below (<1) the linear cost.
    """

    call_us: float = 0.0
    slice_us: float = 0.0
    mflop_us: float = 0.0
    in_kib_us: float = 0.0
    out_kib_us: float = 0.0
    weight_kib_us: float = 0.0
    models: int = 0
    shape_factors: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        for name in COEFFICIENTS:
            value = getattr(self, name)
            if not value >= 0.0:
                raise ValueError(f"{name} must be a non-negative number of microseconds, got {value}")
        if self.models < 0:
            raise ValueError(f"models must be >= 0, got {self.models}")
        widths = {len(point) for point in self.shape_factors}
        if len(widths) > 1 or (widths and widths.pop() < 2):
            raise ValueError("shape_factors entries must all be [log2 dims..., factor] of one length (>= 2)")
        if any(not point[-1] > 0 for point in self.shape_factors):
            raise ValueError("shape_factors must have a positive factor (the last number) in every entry")

    def vector(self) -> tuple[float, ...]:
        """The coefficients in the order of the features (:data:`~devicefit.device_profiles._features.FEATURES`)."""
        return tuple(getattr(self, name) for name in COEFFICIENTS)

    def cost_us(self, features: KernelFeatures) -> float:
        """Predicted microseconds of kernels with these (possibly summed) features."""
        return sum(c * f for c, f in zip(self.vector(), features.vector()))


@dataclasses.dataclass(frozen=True)
class ShapeFactorRule:
    """How a kernel's shape factor is read from the measured ones of its key.

    The factor at shape ``x`` is ``exp(sum_i w_i log f_i / (sum_i w_i + prior_weight))`` over the
    ``neighbours`` nearest measured shapes ``i``, with ``w_i = exp(-(d_i / scale_octaves)^2)`` and ``d_i``
    the Euclidean distance in ``log2`` dimensions. Far from every measured shape the factor returns to 1
    (the linear cost).

    Attributes:
        neighbours: Measured shapes consulted.
        scale_octaves: Distance (in octaves of the dimensions) over which a measurement's influence decays.
        prior_weight: Weight of "factor 1" against the measured ones.
    """

    neighbours: int = 6
    scale_octaves: float = 1.0
    prior_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.neighbours < 1 or not self.scale_octaves > 0 or not self.prior_weight >= 0:
            raise ValueError(f"neighbours must be >= 1, scale_octaves > 0 and prior_weight >= 0: {self}")

    def factor(self, points: Sequence[Sequence[float]], signature: Sequence[float] | None) -> float:
        """The shape factor of a kernel of shape ``signature`` given its key's measured ``points``."""
        if signature is None or not points or len(points[0]) != len(signature) + 1:
            return 1.0
        best: list[tuple[float, float]] = []
        for point in points:
            distance = math.dist(point[:-1], signature)
            best.append((distance, point[-1]))
        best.sort()
        weights = [math.exp(-((d / self.scale_octaves) ** 2)) for d, _ in best[: self.neighbours]]
        total = sum(w * math.log(f) for w, (_, f) in zip(weights, best))
        return math.exp(total / (sum(weights) + self.prior_weight))


@dataclasses.dataclass(frozen=True)
class SubgraphCost:
    """Cost of handing an NNAdapter subgraph to the accelerator and back.

    Attributes:
        call_us: Microseconds per subgraph run (driver launch and synchronisation).
        kib_us: Microseconds per KiB of activations crossing the boundary (inputs in, outputs back).
    """

    call_us: float = 0.0
    kib_us: float = 0.0

    def __post_init__(self) -> None:
        if not (self.call_us >= 0.0 and self.kib_us >= 0.0):
            raise ValueError(f"call_us and kib_us must be non-negative microseconds, got {self}")


@dataclasses.dataclass(frozen=True)
class PredictorError:
    """How far the predictor's figures were from measured ones, and on what.

    Attributes:
        what: What was compared, e.g. ``5-fold cross-validation over the calibration models`` or
            ``held-out candidates (bench/predictor_accuracy.py)``.
        models: How many models were compared.
        mape_percent: Mean absolute percentage error, in percent.
        within10: Share of models predicted within +-10% of the measurement, in [0, 1].
        spearman: Spearman rank correlation of predicted and measured latency, if computed.
    """

    what: str
    models: int
    mape_percent: float
    within10: float
    spearman: float | None = None

    def __post_init__(self) -> None:
        if self.models < 1 or self.mape_percent < 0 or not 0.0 <= self.within10 <= 1.0:
            raise ValueError(f"models must be >= 1, mape_percent >= 0 and within10 in [0, 1]: {self}")

    def describe(self) -> str:
        """``MAPE 2.4%, 97% within +-10% (88 models: held-out ...)``."""
        return (
            f"MAPE {self.mape_percent:.1f}%, {100 * self.within10:.0f}% within +-10% "
            f"({self.models} models: {self.what})"
        )


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a predictor's coefficients come from.

    Attributes:
        calibrated: True when they were fitted on measurements taken on this very device; False when
            they were seeded from public figures (then every prediction is flagged uncalibrated).
        method: How they were obtained, in a sentence.
        measured_on: The machine the measurements were taken on (device, OS, CPU), or ``nothing`` when seeded.
        date: When (ISO 8601).
        tool: Software that produced them (devicefit and Paddle Lite versions).
        models: Measured models the fit used (probes and whole models); 0 when seeded.
        sources: Public figures used for seeding (document, table, value), one per entry.
        error: The measured error of the predictor, if it was measured.
        notes: Anything else a reader must know (load of the machine, caveats).
    """

    calibrated: bool
    method: str
    measured_on: str
    date: str
    tool: str
    models: int = 0
    sources: tuple[str, ...] = ()
    error: PredictorError | None = None
    notes: str = ""


@dataclasses.dataclass(frozen=True)
class PredictorParams:
    """The ``predictor`` section of a device profile.

    Attributes:
        kind: The predictor's model family; ``kernel-linear`` is the one implemented.
        overhead_us: Microseconds per inference outside the kernels (the run call itself).
        kernels: Coefficients per cost key ``<target>/<op type>[.<variant>]/<precision>``.
        subgraph: Coefficients of NNAdapter subgraph hand-offs (accelerator places only).
        shape_factor_rule: How shape factors are interpolated.
        provenance: Where the coefficients come from and how good they were measured to be.
    """

    provenance: Provenance
    kernels: dict[str, KernelCost]
    overhead_us: float = 0.0
    subgraph: SubgraphCost | None = None
    shape_factor_rule: ShapeFactorRule = ShapeFactorRule()
    kind: Literal["kernel-linear"] = "kernel-linear"

    def __post_init__(self) -> None:
        if not self.overhead_us >= 0.0:
            raise ValueError(f"overhead_us must be non-negative, got {self.overhead_us}")
        for key in self.kernels:
            if not _KEY.match(key):
                raise ValueError(f"kernels has a key '{key}' that is not <target>/<op type>[.<variant>]/<precision>")

    def covers(self, keys: set[str]) -> set[str]:
        """The keys among ``keys`` that have no coefficients."""
        return {key for key in keys if key not in self.kernels}

    def stand_in(self, key: str) -> str | None:
        """The key whose coefficients price ``key`` when it has none of its own (see :data:`STAND_IN_OPS` and
        :data:`VARIANT_STAND_INS`).

        The same target and precision first, then the same target at another precision (``any`` and ``fp32``
        first). None when ``key`` has coefficients, is not a stand-in op, or no stand-in is in the table.
        """
        if key in self.kernels:
            return None
        target, op, precision = key.split("/")
        older = older_variant(op)
        others = (older,) if older is not None else STAND_IN_OPS.get(op, ())
        for other in others:
            same_target = sorted(
                (k for k in self.kernels if k.startswith(f"{target}/{other}/")),
                key=lambda k: (k.rsplit("/", 1)[1] != precision, k.rsplit("/", 1)[1] not in ("any", "fp32"), k),
            )
            if same_target:
                return same_target[0]
        return None

    def kernel_cost_us(
        self, features: KernelFeatures, signature: Sequence[float] | None, *, priced_as: str | None = None
    ) -> float:
        """Predicted microseconds of one kernel (its key must be covered, or ``priced_as`` name a covered key).

        Raises:
            KeyError: The key has no coefficients.
        """
        cost = self.kernels[priced_as or features.key]
        return cost.cost_us(features) * self.shape_factor_rule.factor(cost.shape_factors, signature)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A predicted latency and its breakdown.

    Attributes:
        latency_ms: Predicted latency of one inference, in milliseconds.
        overhead_ms: The per-inference overhead part.
        kernels_ms: Per cost key, the predicted milliseconds of its kernels.
        subgraphs_ms: The NNAdapter hand-off part (0 without subgraphs).
        accelerator_ms: The part of ``kernels_ms`` spent inside NNAdapter subgraphs.
        stand_ins: Cost key without coefficients -> the key whose coefficients priced it (:data:`STAND_IN_OPS`);
            empty when every kernel had its own.
    """

    latency_ms: float
    overhead_ms: float
    kernels_ms: Mapping[str, float]
    subgraphs_ms: float = 0.0
    accelerator_ms: float = 0.0
    stand_ins: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def describe_stand_ins(self) -> str:
        """``host/range/fp32 priced as host/fill_constant/any, ...``, or ``""``."""
        return ", ".join(f"{key} priced as {source}" for key, source in sorted(self.stand_ins.items()))


def predict_latency(program: ShapedProgram, params: PredictorParams, *, device_id: str = "device") -> Prediction:
    """Predict the latency of one inference of ``program`` with ``params``.

    Args:
        program: The optimized kernel list with shapes (:func:`~devicefit.device_profiles._shapes.infer_shapes`).
        params: The device's predictor section.
        device_id: Named in errors.

    Raises:
        UncoveredKernelError: Some kernels have no coefficients in ``params``, nor a stand-in of
            :data:`STAND_IN_OPS` (all such keys are listed).
    """
    kernels = [(kernel_features(k), shape_signature(k)) for k in program.kernels]
    stand_ins: dict[str, str] = {}
    missing = []
    for key in sorted(params.covers({features.key for features, _ in kernels})):
        source = params.stand_in(key)
        if source is None:
            missing.append(key)
        else:
            stand_ins[key] = source
    if missing:
        raise UncoveredKernelError(
            f"the predictor of {device_id} has no coefficients for {', '.join(missing)}; "
            "calibrate the device (devicefit calibrate) or measure instead of predicting"
        )
    kernels_ms: dict[str, float] = {}
    for features, signature in kernels:
        cost_us = params.kernel_cost_us(features, signature, priced_as=stand_ins.get(features.key))
        kernels_ms[features.key] = kernels_ms.get(features.key, 0.0) + cost_us / 1000
    accelerator_ms = sum(ms for key, ms in kernels_ms.items() if key.startswith("nnadapter/"))
    subgraphs_ms = 0.0
    if program.subgraphs:
        if params.subgraph is None:
            raise UncoveredKernelError(
                f"the predictor of {device_id} has no subgraph coefficients, but the model has "
                f"{len(program.subgraphs)} NNAdapter subgraphs"
            )
        crossing_kib = sum(g.input_bytes + g.output_bytes for g in program.subgraphs) / 1024.0
        subgraphs_ms = (params.subgraph.call_us * len(program.subgraphs) + params.subgraph.kib_us * crossing_kib) / 1000
    overhead_ms = params.overhead_us / 1000.0
    total = overhead_ms + sum(kernels_ms.values()) + subgraphs_ms
    return Prediction(total, overhead_ms, kernels_ms, subgraphs_ms, accelerator_ms, stand_ins)
