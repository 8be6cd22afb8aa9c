"""Seeding uncalibrated predictors from public figures, for devices nobody here can measure.

A public figure is a whole-model latency that Paddle Lite's own documentation reports for a device (the
rows of ``reference/public_figures.csv``; mostly CNNs: MobileNet V1/V2/V3, ResNet50). The same models are
timed on this host and converted for the device's places, which gives, per figure, the host latency and
the number of kernels the device runs. A two-parameter transfer is fitted per device, precision and unit
(CPU, GPU, accelerator):

    device_latency_ms ~= scale * host_latency_ms + per_kernel_ms * kernels

and the device's kernel table is this host's calibrated table, re-keyed to the device's kernels
(:data:`HOST_EQUIVALENT`), multiplied by ``scale``, with ``per_kernel_ms`` added to every call. NNAdapter
subgraphs get a per-hand-off cost when two figures allow fitting it, else 0.

This is a coarse, honest stand-in: CNN figures say little about Transformer kernels, and the host's cost
structure (MKL on x86) is not an ARM core's or a GPU's. Every seeded profile says
``calibrated: false``, lists its figures, and every prediction made with it is labelled uncalibrated.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from devicefit.device_profiles._predictor import KernelCost, PredictorParams, Provenance, SubgraphCost, older_variant

REFERENCE_CSV = Path(__file__).resolve().parent / "reference" / "public_figures.csv"


class SeedError(ValueError):
    """Public figures or host costs are missing for what a seeded profile needs."""


@dataclasses.dataclass(frozen=True)
class PublicFigure:
    """One published whole-model latency (a row of ``reference/public_figures.csv``).

    Attributes:
        source: Document and table it comes from.
        paddle_lite_version: Paddle Lite version of the measurement.
        soc: The system on chip.
        backend: ``arm``, ``opencl`` or an NNAdapter device name (``huawei_kirin_npu`` ...).
        model: The model (``MobileNetV1``, ``ResNet50`` ...).
        precision: ``fp32``, ``fp16`` or ``int8``.
        threads: CPU threads.
        latency_ms: The published latency, in milliseconds.
        notes: Device, build and caveats.
    """

    source: str
    paddle_lite_version: str
    soc: str
    backend: str
    model: str
    precision: str
    threads: int
    latency_ms: float
    notes: str

    def cite(self) -> str:
        """One line for a profile's provenance."""
        return (f"{self.soc} {self.backend} {self.model} {self.precision} {self.threads} thread(s): "
                f"{self.latency_ms:g} ms (Paddle Lite {self.paddle_lite_version}; {self.source})")


def read_public_figures(path: Path = REFERENCE_CSV) -> list[PublicFigure]:
    """Every row of the public figures file.

    Raises:
        SeedError: A row is malformed (the message names the line).
    """
    figures = []
    with open(path, encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                figures.append(PublicFigure(
                    source=row["source"], paddle_lite_version=row["paddle_lite_version"], soc=row["soc"],
                    backend=row["backend"], model=row["model"], precision=row["precision"],
                    threads=int(row["threads"]), latency_ms=float(row["latency_ms"]), notes=row["notes"] or "",
                ))
            except (KeyError, ValueError) as exc:
                raise SeedError(f"{path}:{line}: malformed row ({exc})") from None
    return figures


def select(figures: Iterable[PublicFigure], *, soc: str, backend: str, precision: str, threads: int = 1) -> list[PublicFigure]:
    """The figures of one device, backend, precision and thread count, at the newest Paddle Lite version."""
    chosen = [f for f in figures if (f.soc, f.backend, f.precision, f.threads) == (soc, backend, precision, threads)]
    if not chosen:
        return []
    newest = max(_version_key(f.paddle_lite_version) for f in chosen)
    return [f for f in chosen if _version_key(f.paddle_lite_version) == newest]


def _version_key(version: str) -> tuple[int, ...]:
    """``"2.11"`` -> ``(2, 11)`` (so that 2.11 is newer than 2.6); non-numeric parts are ignored."""
    return tuple(int(part) for part in version.split(" ")[0].split(".") if part.isdigit())


@dataclasses.dataclass(frozen=True)
class Transfer:
    """``device_ms ~= scale * host_ms + per_kernel_ms * kernels``, fitted on public figures.

    Attributes:
        scale: Device time per unit of this host's time.
        per_kernel_ms: Extra time per kernel launch on the device, in ms (0 when too few figures).
        figures: The figures it was fitted on.
        residual_percent: Mean absolute relative error of the transfer on those figures, in percent.
        adjustment: How the fitted transfer was adjusted afterwards (a clock or thread-count analogy, whose
            figures are then part of ``figures``), or ``""``.
        fitted_on: How many of ``figures`` the fit itself used.
    """

    scale: float
    per_kernel_ms: float
    figures: tuple[PublicFigure, ...]
    residual_percent: float
    adjustment: str = ""
    fitted_on: int = 0

    def describe(self) -> str:
        """``scale 0.574 x host, +0.0079 ms per kernel (fitted on 5 figures, within 2.7% of them)``."""
        fitted = f"fitted on {self.fitted_on} figure(s), within {self.residual_percent:.1f}% of them on average"
        if self.adjustment:
            fitted = f"{self.adjustment}; before that, {fitted}"
        return f"scale {self.scale:.3g} x host, +{self.per_kernel_ms:.3g} ms per kernel ({fitted})"


def fit_transfer(
    figures: Sequence[PublicFigure],
    host_ms: dict[str, float],
    kernels: dict[str, int],
    *,
    min_for_per_kernel: int = 3,
    per_kernel_ms: float | None = None,
) -> Transfer:
    """Fit a :class:`Transfer` on figures whose models were timed on this host and counted on the device.

    Args:
        figures: Public figures of one device, precision and unit.
        host_ms: Model name -> its latency on this host (fp32, one thread), in ms.
        kernels: Model name -> how many kernels the device runs for it (feed and fetch left out).
        min_for_per_kernel: Fewest figures for which ``per_kernel_ms`` is fitted (else it is 0).
        per_kernel_ms: A per-kernel cost to keep (only the scale is fitted), or None to fit it. The fp16 and
            int8 transfers of a CPU take their fp32 transfer's: launching a kernel costs the runtime the same
            at any precision, and five CNN figures cannot tell a per-kernel cost from a scale (fitted freely,
            Snapdragon 865's int8 figures gave +0.0112 ms per kernel against fp32's 0.0079, so every Transformer
            of many small kernels came out slower in int8 than in fp32, against every published int8 speed-up).

    Raises:
        SeedError: No figure has a host latency and a kernel count.
    """
    from scipy.optimize import nnls

    usable = [f for f in figures if f.model in host_ms and f.model in kernels]
    if not usable:
        raise SeedError(f"no usable figure among {[f.model for f in figures]} (host timings: {sorted(host_ms)})")
    device = np.array([f.latency_ms for f in usable])
    host = np.array([host_ms[f.model] for f in usable])
    launches = np.array([float(kernels[f.model]) for f in usable])
    if per_kernel_ms is not None:
        if per_kernel_ms < 0:
            raise SeedError(f"per_kernel_ms must be >= 0, got {per_kernel_ms}")
        per_kernel = per_kernel_ms
        rest = device - per_kernel * launches  # what the scale has to explain
        # least squares on relative error, for the one coefficient: sum((scale*host - rest) / device)^2
        scale = max(0.0, float(np.sum(host * rest / device**2) / np.sum((host / device) ** 2)))
    else:
        columns = [host, launches] if len(usable) >= min_for_per_kernel else [host]
        design = np.array(columns).T / device[:, None]  # relative error
        solution, _ = nnls(design, np.ones(len(usable)))
        scale = float(solution[0])
        per_kernel = float(solution[1]) if len(solution) > 1 else 0.0
    predicted = scale * host + per_kernel * launches
    residual = float(100.0 * np.mean(np.abs(predicted - device) / device))
    return Transfer(scale, per_kernel, tuple(usable), residual, fitted_on=len(usable))


#: Host cost key to use for a device kernel, by op type (the variant and target are handled by
#: :func:`host_key`): kernels the host does not run under the same name get the nearest host kernel.
HOST_EQUIVALENT = {
    "fc": "matmul_v2.weights",
    "mul": "matmul_v2.weights",
    "matmul": None,  # same variant as matmul_v2
    "fusion_elementwise_add_activation": None,
    "elementwise_mul": "elementwise_add",
    "elementwise_sub": "elementwise_add",
    "elementwise_div": "elementwise_add",
    "io_copy": "transpose2",
    "io_copy_once": "transpose2",
    "layout": "transpose2",
    "layout_once": "transpose2",
    "calib": "transpose2",
    "calib_once": "transpose2",
    "flatten_contiguous_range": "reshape2",
    "squeeze2": "reshape2",
    "unsqueeze2": "reshape2",
    "reshape": "reshape2",
    "transpose": "transpose2",
    "batch_norm": "scale",
    "clip": "relu",
    "hard_swish": "gelu",
    "hard_sigmoid": "gelu",
    "pool2d": "softmax",
    "depthwise_conv2d": "conv2d",
}


def host_key(device_key: str, host_keys: set[str]) -> str | None:
    """The host cost key whose coefficients seed ``device_key`` (``<target>/<op>[.<variant>]/<precision>``).

    Returns None when the host has no equivalent kernel.
    """
    _, op_variant, _ = device_key.split("/")
    op, _, variant = op_variant.partition(".")
    mapped = HOST_EQUIVALENT.get(op, op)
    if op in ("matmul",):
        mapped = f"matmul_v2.{variant}" if variant else "matmul_v2.weights"
    elif op == "fusion_elementwise_add_activation":
        mapped = f"fusion_elementwise_add_activation.{variant or 'bcast'}"
    elif mapped and "." not in mapped and variant:
        mapped = f"{mapped}.{variant}"
    candidates = [device_key]
    for name in dict.fromkeys((op_variant, mapped)):  # the same kernel first, then its nearest equivalent
        candidates += [f"x86/{name}/fp32", f"host/{name}/any", f"host/{name}/fp32", f"x86/{name}/any",
                       f"x86/{name}/int32", f"x86/{name}/int64"]
    if mapped and mapped.startswith("elementwise_add") and "." not in mapped:
        candidates += ["x86/elementwise_add.bcast/fp32"]
    if mapped == "fusion_elementwise_add_activation.same":
        candidates += ["x86/fusion_elementwise_add_activation.bcast/fp32"]
    older = older_variant(mapped or "")
    if older is not None:  # a host calibrated before the variant existed: what priced it then
        candidates += [f"x86/{older}/fp32", f"host/{older}/any"]
    return next((key for key in candidates if key in host_keys), None)


def retargeted_keys(host_keys: Iterable[str], targets: Iterable[tuple[str, str]]) -> set[str]:
    """The device keys of every host kernel: ``x86/<op>/fp32`` -> ``<target>/<op>/<precision>`` for each
    ``(target, precision)``; ``host/...`` keys (kernels on the host side of any target) stay as they are.

    Seeded tables cover these on top of the kernels seen in the device's converted sweep, so that an op
    the sweep did not produce but the host calibrated (a mean pooling, a mask multiply) is still priced.
    """
    keys = set()
    for key in host_keys:
        target, op, _ = key.split("/")
        if target == "host":
            keys.add(key)
        elif target == "x86":
            keys.update(f"{device}/{op}/{precision}" for device, precision in targets)
    return keys


def seeded_kernels(
    device_keys: Iterable[str], host: PredictorParams, transfers: dict[str, Transfer], unit_of: dict[str, str]
) -> tuple[dict[str, KernelCost], list[str]]:
    """The device's kernel table: host coefficients of the equivalent kernel, scaled per unit.

    Args:
        device_keys: Cost keys the device's kernel lists use.
        host: This host's calibrated predictor.
        transfers: Unit name (``cpu``, ``gpu``, ``accelerator`` ...) -> its transfer; a key's unit comes from
            ``unit_of[target]``.
        unit_of: Device target name (``arm``, ``host``, ``opencl``, ``nnadapter``) -> unit name.

    Returns:
        The table, and the keys left out because the host has no equivalent kernel.
    """
    table: dict[str, KernelCost] = {}
    missing = []
    for key in sorted(set(device_keys)):
        target = key.split("/")[0]
        source = host_key(key, set(host.kernels))
        transfer = transfers.get(unit_of.get(target, ""))
        if source is None or transfer is None:
            missing.append(key)
            continue
        cost = host.kernels[source]
        scaled = {name: getattr(cost, name) * transfer.scale for name in
                  ("call_us", "slice_us", "mflop_us", "in_kib_us", "out_kib_us", "weight_kib_us")}
        scaled["call_us"] += transfer.per_kernel_ms * 1000.0
        table[key] = KernelCost(**scaled, models=0, shape_factors=cost.shape_factors)
    return table, missing


def seeded_predictor(
    *,
    kernels: dict[str, KernelCost],
    host: PredictorParams,
    transfers: dict[str, Transfer],
    subgraph: SubgraphCost | None,
    method: str,
    date: str,
    tool: str,
    notes: str,
) -> PredictorParams:
    """A whole seeded predictor section, ``calibrated: false``, citing every figure its transfers used.

    Args:
        kernels: The device's kernel table (from :func:`seeded_kernels`, one call per precision and unit).
        host: This host's calibrated predictor (its overhead and shape-factor rule are carried over).
        transfers: Every transfer used, by a label such as ``cpu fp32``.
        subgraph: The NNAdapter hand-off cost, for accelerator places.
        method: How the table was made, in a sentence.
        date: When (ISO 8601).
        tool: What made it.
        notes: Caveats.

    Raises:
        SeedError: No transfer was given.
    """
    if not transfers:
        raise SeedError("a seeded predictor needs at least one transfer")
    sources = tuple(dict.fromkeys(f.cite() for t in transfers.values() for f in t.figures))
    transfer_notes = "; ".join(f"{label}: {t.describe()}" for label, t in sorted(transfers.items()))
    provenance = Provenance(
        calibrated=False,
        method=method,
        measured_on="nothing (no device was measured: seeded from public figures and this host's costs)",
        date=date,
        tool=tool,
        models=0,
        sources=sources,
        error=None,
        notes=f"transfers: {transfer_notes}. {notes}".strip(),
    )
    overhead = host.overhead_us * max(t.scale for t in transfers.values())
    return PredictorParams(provenance=provenance, kernels=kernels, overhead_us=overhead, subgraph=subgraph,
                           shape_factor_rule=host.shape_factor_rule)


def geometric_mean(values: Iterable[float]) -> float:
    """Geometric mean of positive numbers."""
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))
