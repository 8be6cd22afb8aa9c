"""Calibration: measure generated models on a device through its runner, fit the predictor, write a new
profile version with provenance.

The sweep (:class:`CalibrationPlan`) is single-kernel probes of every family over many shapes, a denser
grid of GEMMs, and whole encoder models. Each is exported, converted by Paddle Lite's ``opt`` for the
device's places (protobuf: the kernel list the predictor reads; naive buffer: what the device runs), then
timed through a :class:`~devicefit.evaluators._runner.DeviceRunner`: any runner plugs in (this host's, an
adb phone's, an ssh board's, a fake one in tests), through the same sessions a measured latency uses.

Timing (:class:`TimingProtocol`) visits every model in turn, ``visits`` times round-robin, so that each
model is timed in several moments of a shared machine's load. One visit is one device session (and, where
leases are configured, one hold of the device's lease): each model is staged once and timed in one block.
A model's latency is its fastest timed run over all visits (``min-of-runs``), the statistic a measured
latency reports too (``evaluators/_stats.py``), so a prediction estimates the same quantity a measurement
gives, on every runner (``benchmark_bin`` reports only a block's mean, minimum and maximum); where a block has
per-run times, its second-fastest run stands for it (:func:`block_floor`: one misread run cannot set it).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np

from devicefit.device_profiles._fit import (
    DEFAULT_MODEL_WEIGHT,
    FitError,
    Sample,
    cross_validate,
    fit_predictor,
    predict_sample_ms,
)
from devicefit.device_profiles._predictor import PredictorError, Provenance
from devicefit.device_profiles._probes import (
    DATA_MOVEMENT_KINDS,
    INT8_KINDS,
    PROBE_KINDS,
    SEPARATING_KINDS,
    EncoderSpec,
    ProbeKind,
    ProbeSpec,
    encoder_input_shapes,
    encoder_sweep,
    export_encoder,
    export_probe,
    gemm_sweep,
    probe_input_shapes,
    probe_sweep,
    write_sample_inputs,
)
from devicefit.device_profiles._profile import DeviceProfile, next_version, write_profile
from devicefit.device_profiles._shapes import ShapedProgram, Tensor, infer_shapes
from devicefit.evaluators._errors import (
    DeviceBusyError,
    DeviceGoneError,
    DeviceUnavailableError,
    LeaseLostError,
    MeasurementError,
)
from devicefit.device_profiles._program import read_kernel_program
from devicefit.evaluators._latency import hold_device_lease
from devicefit.evaluators._lease import DeviceLeases
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.evaluators._protocol import Clock, MeasureSettings
from devicefit.evaluators._runner import DeviceRunner
from devicefit.evaluators._stats import MIN_OF_RUNS, BlockTiming
from devicefit.spaces._export import Artifact

Log = Callable[[str], None]
#: Share of the sweep that may fail (export, conversion or timing) before calibration gives up.
MAX_FAILED_SHARE = 0.2


#: Failures of the device itself rather than of one model: the calibration stops at the first one.
DEVICE_FAILURES = (DeviceUnavailableError, DeviceGoneError, DeviceBusyError, LeaseLostError)


class CalibrationError(RuntimeError):
    """Calibration could not produce a predictor (too many failures, the device failed, or the fit failed)."""


@dataclasses.dataclass(frozen=True)
class CalibrationPlan:
    """What a calibration measures.

    Attributes:
        probes_per_kind: Single-kernel probes of each family (random shapes).
        gemm_probes: Extra ``linear`` probes on the GEMM grid.
        encoders: Whole encoder models (ViT- and BERT-style, random widths, depths, lengths).
        encoder_hidden: Widths the whole models are drawn from.
        small_encoders: More whole models, small and deep: widths :attr:`small_hidden`, short sequences (8 to
            32 tokens, or 2x2 and 4x4 patch grids), up to :attr:`small_max_layers` layers. Their kernels take a
            few microseconds each, so their latency is mostly the per-kernel costs that a single-kernel probe
            cannot separate from the per-run overhead of its model (both happen once per probe).
        small_hidden: Widths of the small encoders.
        small_max_layers: Deepest small encoder.
        wide_encoders: More whole models, wider than :attr:`encoder_hidden` (widths :attr:`wide_hidden`, up to
            :attr:`wide_max_layers` layers, on a random stream of their own), so that a model as wide as the
            ones devicefit is asked about (a BERT of d 320) is interpolated, not extrapolated: with the widest
            calibration encoder at 256, the d320 BERTs of the predictor bench were overpredicted by up to 8%.
        wide_hidden: Widths of the wide encoders.
        wide_max_layers: Deepest wide encoder (kept shallow: a wide model takes milliseconds per run).
        folds: Folds of the cross-validation that measures the predictor's error on whole models.
        seed: Seeds every random choice and the models' weights.
        probe_kinds: The probe families (all by default).
    """

    probes_per_kind: int = 16
    gemm_probes: int = 160
    encoders: int = 48
    encoder_hidden: tuple[int, ...] = (32, 64, 96, 128, 192, 256)
    small_encoders: int = 32
    small_hidden: tuple[int, ...] = (32, 64)
    small_max_layers: int = 8
    wide_encoders: int = 8
    wide_hidden: tuple[int, ...] = (288, 384)
    wide_max_layers: int = 3
    folds: int = 5
    seed: int = 0
    probe_kinds: tuple[ProbeKind, ...] = PROBE_KINDS

    def __post_init__(self) -> None:
        if (
            self.probes_per_kind < 1 or self.gemm_probes < 0 or self.encoders < self.folds or self.folds < 2
            or self.small_encoders < 0 or self.small_max_layers < 1 or (self.small_encoders and not self.small_hidden)
            or self.wide_encoders < 0 or self.wide_max_layers < 1 or (self.wide_encoders and not self.wide_hidden)
        ):
            raise ValueError(f"a plan needs probes_per_kind >= 1 and encoders >= folds >= 2: {self}")
        unknown = set(self.probe_kinds) - set(PROBE_KINDS)
        if unknown or not self.probe_kinds:
            raise ValueError(f"probe_kinds must be a non-empty subset of {PROBE_KINDS}, got {self.probe_kinds}")

    @classmethod
    def quick(cls, seed: int = 0) -> CalibrationPlan:
        """A small sweep (about 40 models): for tests and a first look, not for decisions."""
        return cls(probes_per_kind=1, gemm_probes=8, encoders=6, encoder_hidden=(32, 64), small_encoders=2,
                   wide_encoders=0, folds=2, seed=seed)


@dataclasses.dataclass(frozen=True)
class TimingProtocol:
    """How each calibration model is timed.

    Attributes:
        visits: Round-robin visits to every model (one device session each).
        visit_budget_ms: Timed run time per visit, in ms (the run count follows from the model's first block).
        min_runs: Fewest timed runs per visit.
        max_runs: Most timed runs per visit.
        warmup: Untimed runs before a model's block in every visit.
        model_runs_factor: Whole models (group ``model``) get this many times the budget and the fewest runs
            of a probe (up to ``max_runs``). A whole model runs for milliseconds, so the probes' budget gives it
            the fewest runs, and the fastest of few runs of a long model on a loaded host is rarely a run that
            no other job disturbed: calibrations an hour apart measured the same encoders 2-7% apart while their
            probes (hundreds of runs per visit) moved 0.3%.
        clock: ``wall`` or ``thread_cpu`` (see :class:`~devicefit.evaluators._protocol.MeasureSettings`; the
            runner refuses a clock its device's tool does not have).
        step_timeout_seconds: Bound of one step on the device (staging a model, one block), in seconds.
    """

    visits: int = 15
    visit_budget_ms: float = 15.0
    min_runs: int = 10
    max_runs: int = 1000
    warmup: int = 2
    model_runs_factor: float = 4.0
    clock: Clock = "wall"
    step_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        if (
            self.visits < 1
            or self.visit_budget_ms < 0
            or self.min_runs < 1
            or self.max_runs < self.min_runs
            or self.warmup < 0
            or not self.model_runs_factor >= 1.0
            or self.step_timeout_seconds <= 0
        ):
            raise ValueError(f"invalid timing protocol: {self}")

    def settings(self) -> MeasureSettings:
        """The session settings of a visit (what a runner needs: clock, step bound, CPU pinning on this host)."""
        return MeasureSettings(
            warmup=self.warmup,
            block_warmup=self.warmup,
            runs_per_block=self.min_runs,
            max_runs_per_block=self.max_runs,
            reference=False,
            measure_memory=False,
            step_timeout_seconds=self.step_timeout_seconds,
            clock=self.clock,
        )

    def runs_for(self, estimate_ms: float | None, group: str = "probe") -> int:
        """Timed runs of one visit for a model of ``group`` (``probe`` or ``model``) that takes about ``estimate_ms``."""
        scale = self.model_runs_factor if group == "model" else 1.0
        fewest = min(self.max_runs, int(round(scale * self.min_runs)))
        if estimate_ms is None or estimate_ms <= 0:
            return fewest
        return int(min(self.max_runs, max(fewest, scale * self.visit_budget_ms / estimate_ms)))

    def describe(self) -> str:
        """One line for provenance notes."""
        return (
            f"{self.visits} round-robin visits per model, ~{self.visit_budget_ms:g} ms of runs each "
            f"({self.min_runs}..{self.max_runs} runs; whole models {self.model_runs_factor:g}x the time and the "
            f"fewest runs), {self.clock} clock, readings of 0 ms dropped, latency = fastest over the visits of "
            f"each visit's second-fastest run ({MIN_OF_RUNS}, robust to one misread run per visit)"
        )


def protocol_for(profile: DeviceProfile) -> TimingProtocol:
    """The timing protocol for a device.

    This host with one thread: CPU time of the running thread (other processes' time on the shared cores
    is left out) and 15 visits, because the host is shared. A phone or a board: wall time (``benchmark_bin``
    has no other clock, and wall time is what a user of the device waits for), and 3 visits, because it is
    leased to one measurement at a time and every visit costs a round trip to it.
    """
    if profile.reach.kind == "local":
        return TimingProtocol(clock="thread_cpu") if profile.threads == 1 else TimingProtocol()
    return TimingProtocol(visits=3)


@dataclasses.dataclass(frozen=True)
class CalibrationModel:
    """One generated model, converted for the device and ready to time.

    Attributes:
        name: Unique name (the probe or encoder spec's name).
        group: ``probe`` or ``model``.
        nb_file: What the device runs.
        inputs: One ``.npy`` per model input.
        program: Its kernels with shapes (from the protobuf conversion).
    """

    name: str
    group: Literal["probe", "model"]
    nb_file: Path
    inputs: tuple[Path, ...]
    program: ShapedProgram


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The outcome of a calibration.

    Attributes:
        profile: The new profile version (not yet written).
        samples: The measured models as fitted.
        failures: ``name: reason`` of the models that could not be built or timed.
        error: Cross-validated error on the whole models; None when the sweep was too small to measure it.
        alongside_ms: Latency in ms of each model timed alongside the sweep (see :func:`calibrate`), by name;
            never fitted on.
    """

    profile: DeviceProfile
    samples: tuple[Sample, ...]
    failures: tuple[str, ...]
    error: PredictorError | None
    alongside_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def plan_specs(plan: CalibrationPlan) -> list[tuple[str, ProbeSpec | EncoderSpec]]:
    """The sweep of a plan: ``(group, spec)`` pairs, deterministic in ``plan.seed``."""
    rng = np.random.default_rng(plan.seed)
    own_stream = DATA_MOVEMENT_KINDS + INT8_KINDS + SEPARATING_KINDS
    kernels = tuple(k for k in plan.probe_kinds if k not in own_stream)
    specs: list[tuple[str, ProbeSpec | EncoderSpec]] = [
        ("probe", s) for s in probe_sweep(rng, plan.probes_per_kind, kernels)
    ]
    names = {s.name for _, s in specs}
    specs += [("probe", s) for s in gemm_sweep(rng, plan.gemm_probes) if s.name not in names]
    specs += [("model", s) for s in encoder_sweep(rng, plan.encoders, hidden=plan.encoder_hidden)]
    # the data-movement, int8 and bias-add probes draw from their own stream (in that order, each kind after the
    # ones added before it), so adding them left the rest of a seed's sweep as it was
    later = tuple(k for k in plan.probe_kinds if k in own_stream)
    if later:
        specs += [("probe", s) for s in probe_sweep(np.random.default_rng([plan.seed, 1]), plan.probes_per_kind, later)]
    if plan.small_encoders:  # a stream of their own too
        names = {s.name for _, s in specs}
        small = encoder_sweep(
            np.random.default_rng([plan.seed, 2]), plan.small_encoders + len(names), hidden=plan.small_hidden,
            max_layers=plan.small_max_layers, tokens=(8, 16, 32), grids=(2, 4),
        )
        specs += [("model", s) for s in [s for s in small if s.name not in names][: plan.small_encoders]]
    if plan.wide_encoders:  # and one of their own
        names = {s.name for _, s in specs}
        wide = encoder_sweep(
            np.random.default_rng([plan.seed, 3]), plan.wide_encoders + len(names), hidden=plan.wide_hidden,
            max_layers=plan.wide_max_layers, tokens=(16, 32, 64, 128), grids=(4, 6, 8),
        )
        specs += [("model", s) for s in [s for s in wide if s.name not in names][: plan.wide_encoders]]
    return specs


def device_specs(plan: CalibrationPlan, profile: DeviceProfile) -> list[tuple[str, ProbeSpec | EncoderSpec]]:
    """The sweep of a plan for one device: :func:`plan_specs` without the int8 probes when the device does not
    list ``int8`` among its precisions (its int8 programs would run fp32 kernels, or none)."""
    int8 = "int8" in profile.precisions
    return [(g, s) for g, s in plan_specs(plan) if int8 or not (isinstance(s, ProbeSpec) and s.kind in INT8_KINDS)]


def convert_for_device(
    artifact: Artifact,
    shapes: Sequence[tuple[tuple[int, ...], str]],
    profile: DeviceProfile,
    worker: LiteWorker,
    directory: Path,
) -> tuple[Path, ShapedProgram]:
    """Convert an exported model for ``profile`` (``.nb`` and protobuf program) and shape its kernels.

    Args:
        artifact: The exported model.
        shapes: ``(shape, dtype)`` of each model input (batch of one), in feed order.
        profile: The device.
        worker: Runs ``opt``.
        directory: Receives ``program/`` (the optimized program) and ``<device id>.nb``.

    Returns:
        The ``.nb`` file and the program's kernels with shapes.
    """
    converted = worker.convert(
        artifact.model_file, artifact.params_file, profile.places, directory / "program", model_type="protobuf"
    )
    program = infer_shapes(
        read_kernel_program(converted.paths[0], converted.paths[1]), [Tensor(tuple(s), d) for s, d in shapes]
    )
    nb_file = worker.convert(artifact.model_file, artifact.params_file, profile.places, directory / profile.id).nb_file
    return nb_file, program


def prepare_model(
    group: str, spec: ProbeSpec | EncoderSpec, profile: DeviceProfile, worker: LiteWorker, directory: Path, seed: int
) -> CalibrationModel:
    """Export ``spec``, write its sample inputs, convert it for ``profile`` and infer its kernel shapes."""
    if isinstance(spec, ProbeSpec):
        artifact = export_probe(spec, directory / "model", seed)
        shapes = probe_input_shapes(spec)
        id_high = spec.dim("v") if spec.kind == "lookup" else 2
    else:
        artifact = export_encoder(spec, directory / "model", seed)
        shapes = encoder_input_shapes(spec)
        id_high = spec.vocab
    inputs = write_sample_inputs(shapes, directory, np.random.default_rng(seed), id_high=id_high)
    nb_file, program = convert_for_device(artifact, shapes, profile, worker, directory)
    return CalibrationModel(spec.name, "probe" if group == "probe" else "model", nb_file, tuple(inputs), program)


def block_floor(block: BlockTiming) -> float:
    """A block's second-fastest run, in ms (its fastest when it has one run or no per-run times).

    This host's thread CPU clock now and then reads a run far too short: besides the readings of 0 ms (left
    out by the runner), a 29.4 us model once had a 21.1 us reading (its next-fastest runs of 2000 all at
    29.4-29.5 us), which, as the fastest run over 15 visits, became its calibrated latency and its fit
    residual +40%. One such reading in a block cannot move the second-fastest run, which is otherwise within
    ~0.2% of the fastest.
    """
    if block.times_ms is None or block.runs < 2:
        return block.min_ms
    return sorted(block.times_ms)[1]


def _one_line(exc: BaseException, what: str) -> str:
    return f"{what}: {type(exc).__name__}: {exc}".splitlines()[0][:300]


def time_round_robin(
    models: Sequence[CalibrationModel],
    runner: DeviceRunner,
    profile: DeviceProfile,
    protocol: TimingProtocol,
    log: Log,
    *,
    leases: DeviceLeases | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Time every model ``protocol.visits`` times in turn through ``runner``.

    Each visit holds the device's lease (when ``leases`` is given), opens one session, and in it stages
    each model once and times one block of it; the session removes what it put on the device when the visit
    ends. A model's first block sizes its later ones to about ``protocol.visit_budget_ms``.

    Args:
        models: The converted models.
        runner: Reaches ``profile``'s device.
        profile: The device.
        protocol: How to time.
        log: Receives one progress line per visit.
        leases: The device leases of a search that may measure on the same device; None: no lease.

    Returns:
        The latency of each timed model in ms (the fastest over the visits of each visit's :func:`block_floor`),
        and ``name -> reason`` for
        the models whose staging or timing failed (a failed model is not visited again).

    Raises:
        CalibrationError: The device itself failed (unavailable, gone, busy, lease lost): no further model
            could be timed.
    """
    settings = protocol.settings()
    best: dict[str, float] = {}
    estimate: dict[str, float] = {}
    failed: dict[str, str] = {}
    for visit in range(protocol.visits):
        pending = [m for m in models if m.name not in failed]
        if not pending:
            break
        try:
            with hold_device_lease(leases, profile) as lease, runner.open(profile, settings) as session:
                for model in pending:
                    try:
                        staged = session.stage(model.name, model.nb_file, model.inputs)
                        lease.keepalive()
                        runs = protocol.runs_for(estimate.get(model.name), model.group)
                        block = session.time_block(staged, protocol.warmup, runs)
                        lease.keepalive()
                    except DEVICE_FAILURES:
                        raise
                    except (MeasurementError, ValueError) as exc:  # this model failed (crash, timeout, bad times)
                        failed[model.name] = _one_line(exc, "timing")
                        continue
                    estimate.setdefault(model.name, block.figure_ms)
                    best[model.name] = min(best.get(model.name, float("inf")), block_floor(block))
        except DEVICE_FAILURES as exc:
            raise CalibrationError(
                f"{profile.id}: visit {visit + 1} of {protocol.visits} failed, so no further model can be timed: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        log(f"  visit {visit + 1}/{protocol.visits}: {len(best)} models timed, {len(failed)} failed")
    for model in models:
        if model.name not in best and model.name not in failed:
            failed[model.name] = "timing: no visit timed it"
    return best, failed


def _measured_on(profile: DeviceProfile) -> str:
    if profile.reach.kind == "local":
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
            if names:
                cpu = f"{names[0]} x{len(names)}"
        except OSError:
            pass
        return f"{platform.node()}: {cpu}, {platform.system()} {platform.release()}"
    where = profile.reach.serial or profile.reach.host or profile.reach.kind
    return f"{profile.soc} reached by {profile.reach.kind} ({where})"


def _tool(worker: LiteWorker, runtime: str) -> str:
    try:
        own = metadata.version("devicefit")
    except metadata.PackageNotFoundError:
        own = "unknown"
    hello = worker.hello()
    return f"devicefit {own}, Paddle Lite {hello.paddlelite_version} ({hello.opt_version}) converting; run by {runtime}"


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def calibrate(
    profile: DeviceProfile,
    *,
    runner: DeviceRunner,
    worker: LiteWorker,
    work_dir: Path,
    plan: CalibrationPlan = CalibrationPlan(),
    protocol: TimingProtocol | None = None,
    version: int | None = None,
    leases: DeviceLeases | None = None,
    log: Log = lambda line: None,
    today: _dt.date | None = None,
    alongside: Sequence[CalibrationModel] = (),
) -> Calibration:
    """Measure the plan's models on ``profile``'s device, fit its predictor and return the new profile.

    Args:
        profile: The device (its places, threads and reach); its current predictor is ignored.
        runner: Reaches the device (the runner of its reach kind: this host's, an adb phone's, an ssh board's).
        worker: Converts models with Paddle Lite's ``opt`` (on this host).
        work_dir: Where the generated models go (kept, so a reader can rerun any of them).
        plan: What to measure.
        protocol: How to time; by default :func:`protocol_for` the profile.
        version: Version of the new profile; by default one more than any known version of the device.
        leases: Device leases of a search that may measure on the same device (each visit holds the lease);
            None: no lease is taken.
        log: Receives progress lines.
        today: Date recorded in the provenance (default: today).
        alongside: Converted models to time in the same round-robin visits as the sweep, but not to fit on
            (the models a user wants to check the new predictor against: measured under the same conditions
            as the sweep, so that a shared host's drift between two sessions does not enter the comparison).
            Their latencies are :attr:`Calibration.alongside_ms`; a name that is also a sweep model's is
            refused.

    Raises:
        DeviceUnavailableError: The runner cannot reach the device (checked before anything is built).
        ValueError: A model of ``alongside`` is named like a sweep model, the protocol asks for something the
            runner cannot do (a clock), or the lease ttl is shorter
            than twice the protocol's step bound.
        CalibrationError: More than :data:`MAX_FAILED_SHARE` of the models failed, the device failed during
            the sweep, or the fit failed.
    """
    protocol = protocol or protocol_for(profile)
    if leases is not None and leases.ttl_seconds < 2 * protocol.step_timeout_seconds:
        raise ValueError(
            f"the lease ttl ({leases.ttl_seconds:g} s) must be at least twice the step timeout "
            f"({protocol.step_timeout_seconds:g} s): the lease is renewed between steps"
        )
    runner.check(profile)
    runtime = runner.runtime_version(profile)
    specs = device_specs(plan, profile)
    clash = {m.name for m in alongside} & {spec.name for _, spec in specs}
    if clash:
        raise ValueError(f"models timed alongside the sweep must not be sweep models: {sorted(clash)[:5]}")
    log(f"calibrating {profile.id} ({profile.places}, {profile.threads} thread(s)): {len(specs)} models")
    load_before = _load()
    models: list[CalibrationModel] = []
    failures: dict[str, str] = {}
    for index, (group, spec) in enumerate(specs):
        try:
            models.append(prepare_model(group, spec, profile, worker, Path(work_dir) / spec.name, plan.seed))
        except Exception as exc:  # noqa: BLE001  (a model that cannot be built is skipped, and reported)
            failures[spec.name] = f"build: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        if (index + 1) % 50 == 0:
            log(f"  built {index + 1}/{len(specs)} models")
    if alongside:
        log(f"  timing {len(alongside)} more models alongside the sweep (not fitted on)")
    measured, timing_failures = time_round_robin([*models, *alongside], runner, profile, protocol, log, leases=leases)
    extra = {m.name for m in alongside}
    latencies = {name: ms for name, ms in measured.items() if name not in extra}
    alongside_ms = {name: ms for name, ms in measured.items() if name in extra}
    failures.update({name: why for name, why in timing_failures.items() if name not in extra})
    for name, why in timing_failures.items():
        if name in extra:
            log(f"  not timed (alongside): {name}: {why}")
    if len(failures) > MAX_FAILED_SHARE * len(specs):
        first = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3])
        raise CalibrationError(f"{len(failures)} of {len(specs)} calibration models failed (first: {first})")
    samples = tuple(
        Sample.from_program(m.name, m.program, latencies[m.name], m.group) for m in models if m.name in latencies
    )
    error: PredictorError | None
    try:
        error = cross_validate(samples, folds=plan.folds, seed=plan.seed)
        error_note = ""
    except FitError as exc:
        error, error_note = None, f"; error not measured: {exc}"
    try:
        provenance = Provenance(
            calibrated=True,
            method=(
                f"devicefit calibrate: {sum(s.group == 'probe' for s in samples)} single-kernel probes and "
                f"{sum(s.group == 'model' for s in samples)} whole encoder models (plan seed {plan.seed}), "
                f"fitted by non-negative least squares on relative error (whole models weighted "
                f"{DEFAULT_MODEL_WEIGHT:g}x a probe), shape factors from the probes"
            ),
            measured_on=_measured_on(profile),
            date=(today or _dt.date.today()).isoformat(),
            tool=_tool(worker, runtime),
            models=len(samples),
            error=error,
            notes=f"timing: {protocol.describe()}; {load_before} at the start, {_load()} at the end{error_note}",
        )
        params = fit_predictor(samples, provenance)
    except FitError as exc:
        raise CalibrationError(f"the fit failed: {exc}") from None
    new_version = version if version is not None else max(next_version(profile.id), profile.version + 1)
    new_profile = dataclasses.replace(profile, version=new_version, predictor=params)
    log(f"fitted {len(params.kernels)} kernel types; {new_profile.describe_predictor()}")
    return Calibration(new_profile, samples, tuple(f"{k}: {v}" for k, v in failures.items()), error, alongside_ms)


def write_calibration(calibration: Calibration, out_dir: Path) -> tuple[Path, Path]:
    """Write the new profile (``<id>.v<version>.yaml``) and its measurements (``...measurements.json``).

    Raises:
        FileExistsError: A profile of that version exists already in ``out_dir``.
    """
    profile = calibration.profile
    assert profile.predictor is not None
    header = (
        f"{profile.name}: version {profile.version}, written by `devicefit calibrate`.\n"
        f"{profile.describe_predictor()}\n"
        "Every number of the predictor section was fitted on measurements of this device; see provenance."
    )
    path = write_profile(profile, out_dir, header=header)
    measurements = {
        "device": profile.id,
        "version": profile.version,
        "unit": "ms",
        "failures": list(calibration.failures),
        "models": [
            {
                "name": s.name,
                "group": s.group,
                "measured_ms": s.latency_ms,
                "fitted_ms": predict_sample_ms(profile.predictor, s),
            }
            for s in calibration.samples
        ],
    }
    data_path = path.with_name(f"{profile.id}.v{profile.version}.measurements.json")
    data_path.write_text(json.dumps(measurements, indent=1) + "\n", encoding="utf-8")
    return path, data_path
