"""Calibration: measure generated models on a device through its runner, fit the predictor, write a new
profile version with provenance.

The sweep (:class:`CalibrationPlan`) is single-kernel probes of every family over many shapes, a denser
grid of GEMMs, and whole encoder models. Each is exported, converted by Paddle Lite's ``opt`` for the
device's places (protobuf: the kernel list the predictor reads; naive buffer: what the device runs), then
timed through a :class:`~devicefit.evaluators._latency.DeviceRunner`: any runner plugs in (this host's, an
adb phone's, an ssh board's, a fake one in tests).

Timing (:class:`TimingProtocol`) visits every model in turn, ``visits`` times round-robin, so that each
model is timed in several moments of a shared machine's load; a model's latency is the lowest of its
per-visit 10th percentiles. On this kind of host (2 shared cores, other jobs running) repeated
measurements of one model agreed within about 2% this way; single bursts of runs did not (see
``bench/predictor_accuracy.py``).
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
    PROBE_KINDS,
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
from devicefit.evaluators._kernels import read_kernel_program
from devicefit.evaluators._latency import DeviceRunner, MeasureSettings
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.spaces._export import Artifact

Log = Callable[[str], None]
#: Share of the sweep that may fail (export, conversion or timing) before calibration gives up.
MAX_FAILED_SHARE = 0.2


class CalibrationError(RuntimeError):
    """Calibration could not produce a predictor (too many failures, or too few measurements)."""


@dataclasses.dataclass(frozen=True)
class CalibrationPlan:
    """What a calibration measures.

    Attributes:
        probes_per_kind: Single-kernel probes of each family (random shapes).
        gemm_probes: Extra ``linear`` probes on the GEMM grid.
        encoders: Whole encoder models (ViT- and BERT-style, random widths, depths, lengths).
        encoder_hidden: Widths the whole models are drawn from.
        folds: Folds of the cross-validation that measures the predictor's error on whole models.
        seed: Seeds every random choice and the models' weights.
        probe_kinds: The probe families (all by default).
    """

    probes_per_kind: int = 16
    gemm_probes: int = 160
    encoders: int = 48
    encoder_hidden: tuple[int, ...] = (32, 64, 96, 128, 192, 256)
    folds: int = 5
    seed: int = 0
    probe_kinds: tuple[ProbeKind, ...] = PROBE_KINDS

    def __post_init__(self) -> None:
        if self.probes_per_kind < 1 or self.gemm_probes < 0 or self.encoders < self.folds or self.folds < 2:
            raise ValueError(f"a plan needs probes_per_kind >= 1 and encoders >= folds >= 2: {self}")
        unknown = set(self.probe_kinds) - set(PROBE_KINDS)
        if unknown or not self.probe_kinds:
            raise ValueError(f"probe_kinds must be a non-empty subset of {PROBE_KINDS}, got {self.probe_kinds}")

    @classmethod
    def quick(cls, seed: int = 0) -> CalibrationPlan:
        """A small sweep (about 40 models): for tests and a first look, not for decisions."""
        return cls(probes_per_kind=1, gemm_probes=8, encoders=6, encoder_hidden=(32, 64), folds=2, seed=seed)


@dataclasses.dataclass(frozen=True)
class TimingProtocol:
    """How each calibration model is timed.

    Attributes:
        visits: Round-robin visits to every model.
        visit_budget_ms: Timed run time per visit (the run count follows from a first estimate).
        min_runs: Fewest timed runs per visit.
        max_runs: Most timed runs per visit.
        warmup: Untimed runs at the start of every visit.
        percentile: Per-visit percentile of the run times; the model's latency is the lowest over visits.
        clock: ``wall`` or ``thread_cpu`` (see :class:`~devicefit.evaluators._latency.MeasureSettings`).
    """

    visits: int = 15
    visit_budget_ms: float = 15.0
    min_runs: int = 10
    max_runs: int = 1000
    warmup: int = 2
    percentile: float = 10.0
    clock: Literal["wall", "thread_cpu"] = "wall"

    def __post_init__(self) -> None:
        if self.visits < 1 or self.min_runs < 1 or self.max_runs < self.min_runs or not 0 <= self.percentile <= 50:
            raise ValueError(f"invalid timing protocol: {self}")

    def runs_for(self, estimate_ms: float | None) -> int:
        """Timed runs of one visit for a model that takes about ``estimate_ms``."""
        if estimate_ms is None or estimate_ms <= 0:
            return self.min_runs
        return int(min(self.max_runs, max(self.min_runs, self.visit_budget_ms / estimate_ms)))

    def describe(self) -> str:
        """One line for provenance notes."""
        return (
            f"{self.visits} round-robin visits per model, ~{self.visit_budget_ms:g} ms of runs each "
            f"({self.min_runs}..{self.max_runs} runs), {self.clock} clock, latency = lowest per-visit "
            f"p{self.percentile:g}"
        )


def protocol_for(profile: DeviceProfile) -> TimingProtocol:
    """The timing protocol for a device.

    This host with one thread: CPU time of the running thread (other processes' time on the shared cores
    is left out) and 15 visits, because the host is shared. A phone or a board: wall time, and 3 visits,
    because it is leased to one measurement at a time and every visit costs a round trip to it.
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
    """

    profile: DeviceProfile
    samples: tuple[Sample, ...]
    failures: tuple[str, ...]
    error: PredictorError | None


def plan_specs(plan: CalibrationPlan) -> list[tuple[str, ProbeSpec | EncoderSpec]]:
    """The sweep of a plan: ``(group, spec)`` pairs, deterministic in ``plan.seed``."""
    rng = np.random.default_rng(plan.seed)
    specs: list[tuple[str, ProbeSpec | EncoderSpec]] = [
        ("probe", s) for s in probe_sweep(rng, plan.probes_per_kind, plan.probe_kinds)
    ]
    names = {s.name for _, s in specs}
    specs += [("probe", s) for s in gemm_sweep(rng, plan.gemm_probes) if s.name not in names]
    specs += [("model", s) for s in encoder_sweep(rng, plan.encoders, hidden=plan.encoder_hidden)]
    return specs


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


def time_round_robin(
    models: Sequence[CalibrationModel],
    runner: DeviceRunner,
    profile: DeviceProfile,
    protocol: TimingProtocol,
    log: Log,
) -> tuple[dict[str, float], dict[str, str]]:
    """Time every model ``protocol.visits`` times in turn through ``runner``.

    Returns:
        The latency of each timed model in ms (lowest per-visit percentile), and ``name -> reason`` for the
        models whose timing failed (a failed model is not visited again).
    """
    best: dict[str, float] = {}
    estimate: dict[str, float] = {}
    failed: dict[str, str] = {}
    for visit in range(protocol.visits):
        for model in models:
            if model.name in failed:
                continue
            settings = MeasureSettings(
                warmup=protocol.warmup, blocks=1, runs_per_block=protocol.runs_for(estimate.get(model.name)),
                clock=protocol.clock,
            )
            try:
                timings = runner.time_runs(model.nb_file, model.inputs, profile, settings)
                times = np.asarray(timings.times_ms, dtype=float)
                if times.size == 0 or not np.all(np.isfinite(times)) or np.any(times < 0):
                    raise ValueError(f"the runner returned unusable times {timings.times_ms[:5]}")
            except Exception as exc:  # noqa: BLE001  (one model's failure must not end the calibration)
                failed[model.name] = f"timing: {type(exc).__name__}: {exc}".splitlines()[0][:300]
                continue
            value = float(np.percentile(times, protocol.percentile))
            estimate[model.name] = float(np.median(times))
            if value > 0:
                best[model.name] = min(best.get(model.name, float("inf")), value)
        log(f"  visit {visit + 1}/{protocol.visits}: {len(best)} models timed, {len(failed)} failed")
    for model in models:
        if model.name not in best and model.name not in failed:
            failed[model.name] = "timing: no positive run time"
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


def _tool(worker: LiteWorker) -> str:
    try:
        own = metadata.version("devicefit")
    except metadata.PackageNotFoundError:
        own = "unknown"
    hello = worker.hello()
    return f"devicefit {own}, Paddle Lite {hello.paddlelite_version} ({hello.opt_version})"


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
    log: Log = lambda line: None,
    today: _dt.date | None = None,
) -> Calibration:
    """Measure the plan's models on ``profile``'s device, fit its predictor and return the new profile.

    Args:
        profile: The device (its places, threads and reach); its current predictor is ignored.
        runner: Times ``.nb`` files on the device.
        worker: Converts models with Paddle Lite's ``opt`` (on this host).
        work_dir: Where the generated models go (kept, so a reader can rerun any of them).
        plan: What to measure.
        protocol: How to time; by default :func:`protocol_for` the profile.
        version: Version of the new profile; by default one more than any known version of the device.
        log: Receives progress lines.
        today: Date recorded in the provenance (default: today).

    Raises:
        CalibrationError: More than :data:`MAX_FAILED_SHARE` of the models failed, or the fit failed.
    """
    protocol = protocol or protocol_for(profile)
    specs = plan_specs(plan)
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
    latencies, timing_failures = time_round_robin(models, runner, profile, protocol, log)
    failures.update(timing_failures)
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
            tool=_tool(worker),
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
    return Calibration(new_profile, samples, tuple(f"{k}: {v}" for k, v in failures.items()), error)


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
