"""The fit: search the space with Optuna (ask/tell), evaluate each candidate for real, write the front.

One trial: suggest a Candidate -> materialize the student (inheriting the teacher's weights) -> short
distillation fine-tune, scored on the validation split -> export the fine-tuned student -> convert with
Paddle Lite for each device and measure it there, or predict it with the device profile's predictor (devices
reached by ``none``, and those named by ``FitSettings.predict``) -> tell Optuna. Everything is recorded on
the trial, every latency with its source.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.device_profiles._predictor import UncoveredKernelError
from devicefit.device_profiles._profile import DeviceProfile
from devicefit.evaluators._accuracy import DEFAULT_DISTILLATION, DistillationEvaluator, DistillationSettings, predict_logits
from devicefit.evaluators._accuracy import NoFinetuneEvaluator
from devicefit.evaluators._data import check_task_data
from devicefit.evaluators._metrics import ACCURACY, Metric, MetricFunction, as_metric
from devicefit.evaluators._latency import LatencyEvaluator, MeasureSettings, default_latency
from devicefit.evaluators._lite_client import LiteUnavailableError
from devicefit.evaluators._types import AccuracyResult, LatencyResult, latency_source_label
from devicefit.search._budget import Budget, memory_violations
from devicefit.search._claims import CandidateClaims
from devicefit.search._final import FinalSettings, run_final_rung
from devicefit.search._outputs import OutputSummary, write_outputs
from devicefit.search._progress import Progress
from devicefit.search._records import RECORD_ATTR, Objective, TrialRecord, objectives_for
from devicefit.search._screening import SCREEN_ATTR, LadderSettings, latency_margin, objective_margins, screen
from devicefit.search._samplers import DEFAULT_SAMPLER, describe_sampler, make_sampler, warm_start_for
from devicefit.search._study import (
    WORKER_ATTR,
    Heartbeat,
    ask,
    fail_dead_trials,
    finished_trial_count,
    open_study,
    sqlite_url,
    this_worker,
)
from devicefit.search._task import Task
from devicefit.spaces._candidate import Candidate
from devicefit.spaces._export import Artifact, export_inference_model, program_logits
from devicefit.spaces._precision import lite_deployment_problem
from devicefit.spaces._space import SearchSpace, SpaceBounds, TransformerSpace

STUDY_FILE = "study.db"
#: How long a trial waits for another worker that is building the same candidate.
CLAIM_WAIT_SECONDS = 1800
CLAIM_POLL_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """Settings of one fit. Every field has a default chosen for a hands-off run.

    Attributes:
        out: Output folder (created; an existing run there is resumed). Workers of one distributed search
            share it (candidate files are written there).
        devices: Target devices.
        trials: Trials the study should have when the run ends (a resumed run adds the rest).
        seed: Seeds the sampler, the fine-tunes and the calibration batch.
        study_name: Name of the Optuna study inside the storage.
        storage: Optuna storage URL; ``None`` is the SQLite file ``<out>/study.db``.
        sampler: ``surrogate`` (the default), ``nsga2``, ``tpe``, ``gp`` or ``random``.
        budget: Limits a deployable candidate must meet (Optuna constraints).
        time_seconds: Wall-clock budget: no trial starts that would likely end after it.
        latency_objective: ``per-device`` (one objective per device) or ``worst`` (the slowest device).
        distillation: The accuracy rung used during the search (default: the rung chosen by
            ``bench/proxy_fidelity.py``, see ``evaluators._accuracy.DEFAULT_DISTILLATION``).
        metric: What the accuracy objective measures: ``accuracy``, ``macro_f1``, or a callable
            ``(logits [N, C], labels [N]) -> float`` (higher is better).
        measure: The timing protocol of measured latency.
        calibration_samples: Training samples used to measure importance.
        space: The user's :class:`SpaceBounds` fields (plain values); the rest are chosen from the model and
            the devices (precisions: those every device runs with real kernels).
        predict: Ids of devices whose latency is predicted by their profile's predictor although they could
            be measured; devices reached by ``none`` are always predicted.
        ladder: The fidelity ladder: screen every candidate cheaply, promote the promising ones
            (:mod:`devicefit.search._screening`).
        final: Rung 3 after the search, on every Pareto member (full fine-tune, QAT for int8; test figures;
            the members' files are then the re-trained models): :mod:`devicefit.search._final`. ``None``
            (default): the members are exported as the search left them. Only a run that exports runs it.
    """

    out: Path
    devices: tuple[DeviceProfile, ...]
    trials: int = 12
    seed: int = 0
    study_name: str = "devicefit"
    storage: str | None = None
    sampler: str = DEFAULT_SAMPLER
    budget: Budget = Budget()
    time_seconds: float | None = None
    latency_objective: str = "per-device"
    distillation: DistillationSettings = DEFAULT_DISTILLATION
    metric: Metric | str | MetricFunction = ACCURACY
    measure: MeasureSettings = MeasureSettings()
    calibration_samples: int = 256
    space: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    predict: tuple[str, ...] = ()
    ladder: LadderSettings = LadderSettings()
    final: FinalSettings | None = None

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if not self.devices:
            raise ValueError("at least one device is needed")
        ids = [d.id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a device is listed twice: {ids}")
        unknown = set(self.budget.latency_ms) - set(ids)
        if unknown:
            raise ValueError(f"latency budget for devices the run does not target: {sorted(unknown)}")
        if self.time_seconds is not None and self.time_seconds <= 0:
            raise ValueError(f"time_seconds must be positive, got {self.time_seconds}")
        unknown = set(self.predict) - set(ids)
        if unknown:
            raise ValueError(f"predict names devices that are not targets: {sorted(unknown)}")
        self.space_bounds()  # a bad bound fails here, before anything runs
        as_metric(self.metric)  # so does an unknown metric name

    def predicted(self, device: DeviceProfile) -> bool:
        """Whether ``device``'s latency is predicted (else measured)."""
        return device.reach.kind == "none" or device.id in self.predict

    def space_bounds(self) -> SpaceBounds:
        """The space's bounds: the user's ``space`` over the defaults chosen for the devices."""
        from devicefit.device_profiles._schema import from_mapping

        runnable = common_precisions(self.devices)
        refused = [p for p in self.space.get("precisions", ()) if p not in runnable]
        if refused:
            raise ValueError(
                f"space precisions {', '.join(refused)}: not run by every target device "
                f"({', '.join(self.device_ids)} all run: {', '.join(runnable)})"
            )
        # The schema turns the plain values (lists from YAML, flags or a run spec) into SpaceBounds' types.
        return from_mapping({"precisions": list(runnable), **self.space}, SpaceBounds, source="space", what="space bounds")

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.devices)

    @property
    def storage_url(self) -> str:
        return self.storage or sqlite_url(self.out / STUDY_FILE)

    @property
    def objectives(self) -> list[Objective]:
        return objectives_for(self.device_ids, self.latency_objective)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What a fit produced.

    Attributes:
        out: The output folder.
        outputs: The front that was written (and, if no candidate met the budget, the closest ones).
        completed: Trials that evaluated a candidate (duplicates included).
        failed: Trials that failed; the reason is on each trial (user attribute ``error``).
        stopped_by_time: The wall-clock budget ended the run before its trial count.
    """

    out: Path
    outputs: OutputSummary
    completed: int
    failed: int
    stopped_by_time: bool = False

    @property
    def pareto(self) -> list[Any]:
        return self.outputs.members


def common_precisions(devices: tuple[DeviceProfile, ...]) -> tuple[str, ...]:
    """Precisions every device runs with real kernels (fp32 always)."""
    shared = set(devices[0].precisions)
    for device in devices[1:]:
        shared &= set(device.precisions)
    return tuple(p for p in ("fp32", "fp16", "int8") if p in shared)


def rejection_reason(candidate: Candidate, devices: tuple[DeviceProfile, ...]) -> str | None:
    """Why a device cannot run ``candidate``, or ``None`` when all can.

    A device cannot run a precision its profile does not list, nor what Paddle Lite cannot deploy for its
    places (int8, fp16 or weight-only quantization on x86: see ``lite_deployment_problem``).
    """
    for device in devices:
        if candidate.precision not in device.precisions:
            return f"{device.id} has no {candidate.precision} kernels (its profile lists {list(device.precisions)})"
        problem = lite_deployment_problem(candidate, device.places)
        if problem is not None:
            return f"{device.id} ({device.places}): {problem}"
    return None


def _program_space(task: Task, settings: FitSettings) -> SearchSpace:
    """The space of an inference program without its code: precision and sparsity (``spaces._program_space``).

    Raises:
        BoundsError: The user's bounds set a structural dimension, or leave nothing open.
    """
    from devicefit.spaces._program_space import ProgramSpace, program_bounds

    assert task.program is not None
    inputs, _ = _calibration_batch(task, settings.calibration_samples, settings.seed)
    return ProgramSpace(task.program, inputs, bounds=program_bounds(settings.space_bounds(), set(settings.space)))


def _calibration_batch(task: Task, samples: int, seed: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    rng = np.random.default_rng(seed)
    train = task.data.train
    indices = np.sort(rng.choice(len(train), size=min(samples, len(train)), replace=False))
    batch = train.take(indices)
    return batch.inputs, batch.labels


class Fit:
    """One fit run: owns the study, the space, the evaluators and the output folder.

    Args:
        task: The teacher and its data.
        settings: The run's settings.
        progress: Where progress lines go.
        latency: The latency evaluator; by default Paddle Lite measurements on this host, phones (adb) and
            boards (ssh), with device leases and the latency cache in the study's database, and the profile's
            predictor for the devices ``settings`` says to predict.
        space: The search space; by default a :class:`TransformerSpace` of the teacher.
        run_spec: What ``devicefit worker`` needs to join this search (stored in the study when it is created).
        screening: The latency evaluator that screens candidates for devices that will be measured; by default
            the device profile's predictor (through this run's Lite worker). Devices without a predictor, and
            runs given their own ``latency`` but no ``screening``, are screened with their final figure.

    Raises:
        ValueError: Without ``latency``, a device to predict has no predictor in its profile.
    """

    def __init__(
        self,
        task: Task,
        settings: FitSettings,
        *,
        progress: Progress | None = None,
        latency: LatencyEvaluator | None = None,
        space: SearchSpace | None = None,
        run_spec: dict[str, Any] | None = None,
        screening: LatencyEvaluator | None = None,
    ) -> None:
        if latency is None:
            for device in settings.devices:
                if settings.predicted(device) and device.predictor is None:
                    raise ValueError(f"{device.id} has no latency predictor, so its latency cannot be predicted")
        self.task = task
        self.settings = settings
        self.run_spec = run_spec
        self.progress = progress or Progress(settings.trials)
        self._latency = latency
        self._owned_worker: Any = None
        check_task_data(task.data, task.input_spec, task.teacher)  # bad data fails here, before any training
        if space is None and task.program is not None:
            space = _program_space(task, settings)
        if space is None:
            inputs, labels = _calibration_batch(task, settings.calibration_samples, settings.seed)
            bounds = settings.space_bounds()
            space = TransformerSpace(task.teacher, inputs, labels, bounds=bounds, seed=settings.seed)
        self.space = space
        layout = getattr(space, "layout", None)  # where the teacher's blocks are, for the distillation taps
        self.accuracy = DistillationEvaluator(
            task.teacher, task.data, settings.distillation, metric=settings.metric, layout=layout
        )
        if not space.finetunes and settings.final is not None:
            raise ValueError(
                "--final re-trains the Pareto members, but this space's candidates cannot be trained "
                f"({getattr(space, 'no_finetune_reason', 'they are scored as built')}); run without --final"
            )
        if not space.finetunes:  # students are scored as built, and promotion fine-tunes nothing
            self.accuracy = NoFinetuneEvaluator(task.teacher, task.data, metric=settings.metric)
            self.settings = settings = dataclasses.replace(
                settings, ladder=dataclasses.replace(settings.ladder, promote_epochs=0)
            )
        self._promotion: DistillationEvaluator | None = None
        self._screening = screening
        self._predictor: LatencyEvaluator | None = None  # the default screening: profiles' predictors
        self._claims: CandidateClaims | None = None
        self._started = time.monotonic()
        self._trial_seconds: list[float] = []
        self._trials_run_here = 0

    @property
    def latency(self) -> LatencyEvaluator:
        if self._latency is None:
            from devicefit.evaluators._lite_client import LiteWorker
            from devicefit.evaluators._predicted import LatencyByDevice, PredictedLatency

            self._owned_worker = LiteWorker()
            evaluators: dict[str, LatencyEvaluator] = {}
            predicted = [d for d in self.settings.devices if self.settings.predicted(d)]
            if predicted:
                predictor = PredictedLatency(self._owned_worker)
                evaluators.update({d.id: predictor for d in predicted})
            if len(predicted) < len(self.settings.devices):
                measured = default_latency(
                    self._owned_worker,
                    self.settings.measure,
                    storage_url=self.settings.storage_url,
                    reference_dir=self.settings.out / "reference",
                )
                evaluators.update({d.id: measured for d in self.settings.devices if not self.settings.predicted(d)})
            self._latency = LatencyByDevice(evaluators)
        return self._latency

    def _check_lite(self) -> None:
        """Start the Lite worker this run owns now, so that a broken setup fails before the first trial."""
        if self._latency is None:
            self.latency  # noqa: B018  (builds the default evaluator and its worker)
        if self._owned_worker is not None:
            self._owned_worker.hello()

    def close(self) -> None:
        """Stop the Lite worker this run started, if any, and release the database connections (claims, and
        the evaluator's leases and cache)."""
        if self._claims is not None:
            self._claims.close()
            self._claims = None
        if self._owned_worker is not None:
            if self._latency is not None:
                self._latency.close()
            self._owned_worker.close()
            self._owned_worker = None

    def __enter__(self) -> Fit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the run -------------------------------------------------------------------------------------------

    def describe(self) -> list[tuple[str, str]]:
        """The settings this run chose, for the banner."""
        s = self.settings
        rows = [("task", f"{self.task.name}: {self.task.description}"), ("devices", ", ".join(s.device_ids))]
        rows.append(("space", self.space.describe()))
        time_budget = f", stop after {s.time_seconds:.0f} s" if s.time_seconds else ""
        rows += [
            ("trials", f"{s.trials}{time_budget} ({describe_sampler(s.sampler, trials=s.trials, seed=s.seed)})"),
            ("objectives", ", ".join(f"{o.name} ({o.direction})" for o in s.objectives)),
            ("budget", s.budget.describe()),
            ("accuracy", f"{as_metric(s.metric).name} on val after {s.distillation.fidelity} (distillation fine-tune on train)"),
            ("latency", self._describe_latency()),
            ("ladder", s.ladder.describe(self.screened_devices())),
            *([("final", s.final.describe())] if s.final is not None else []),
            ("output", str(s.out)),
        ]
        if s.storage:
            rows.append(("study", f"{s.study_name} in {s.storage}"))
        if not self.space.finetunes:
            rows = [(name, self._describe_no_finetune() if name == "accuracy" else value) for name, value in rows]
        return rows

    def _describe_no_finetune(self) -> str:
        """The banner's accuracy row when the space's students cannot be fine-tuned."""
        reason = getattr(self.space, "no_finetune_reason", "the space's students cannot be trained")
        return (f"{as_metric(self.settings.metric).name} on val of each candidate as built, not fine-tuned "
                f"({self.accuracy.fidelity}: {reason}; --epochs does not apply)")

    def _describe_latency(self) -> str:
        """How each device's latency is obtained: the measurement protocol, or which predictor, labelled as every
        figure of that device will be (``predicted (uncalibrated)`` when the predictor was not fitted on it)."""
        s = self.settings
        m = s.measure
        parts = []
        measured = [d.id for d in s.devices if not s.predicted(d)]
        if measured:
            parts.append(
                f"{', '.join(measured)} measured with Paddle Lite: the fastest run, after {m.warmup} warm-up, in "
                f"blocks of >= {m.runs_per_block} runs (>= {m.min_block_ms:g} ms)"
                f"{' interleaved with a reference model' if m.reference else ''} until {m.floor_blocks} blocks "
                f"reach it and the median's CI is within +-{m.target_ci_pct:g}% ({m.blocks}..{m.max_blocks} "
                f"blocks, {m.remeasures} re-measure when noisy)"
            )
        for device in s.devices:
            if s.predicted(device):
                label = latency_source_label("predicted", device.calibrated)
                parts.append(f"{device.id} {label}, never run: {device.describe_predictor()}")
        return "; ".join(parts)

    def run(self, *, export: bool = True) -> FitResult:
        """Search until the study has ``settings.trials`` trials (or the time budget ends), then write outputs.

        Args:
            export: Also export the Pareto members (``models/``, test accuracy) and write ``report.html``;
                False writes only ``pareto.csv`` and ``pareto.json`` (``devicefit search``).
        """
        s = self.settings
        s.out.mkdir(parents=True, exist_ok=True)
        self._write_run_json()
        study = self._open(create=True)
        self.progress.banner(f"devicefit fit: {self.task.name} -> {', '.join(s.device_ids)}", self.describe())
        self._check_lite()
        if "teacher_accuracy" not in study.user_attrs:
            study.set_user_attr("teacher_accuracy", self.teacher_accuracy())
        if self.run_spec is not None and "spec" not in study.user_attrs:
            study.set_user_attr("spec", self.run_spec)
        already = finished_trial_count(study)
        self.progress.done = already
        if study.get_trials(deepcopy=False):
            interrupted = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("interrupted"))
            self.progress.info(
                f"resuming study '{s.study_name}': {already} trials finished, {interrupted} interrupted (not counted)"
            )
        else:
            for candidate in warm_start_for(s.sampler, self.space.warm_start())[: s.trials]:
                study.enqueue_trial(self.space.params_for(candidate), skip_if_exists=True)
        stopped_by_time = self._trials_until_done(study)
        self._wait_for_other_workers(study)
        return self.finish(study, stopped_by_time=stopped_by_time, export=export)

    def work(self) -> int:
        """Join an existing study as one more worker: run trials until it has enough; returns how many ran here."""
        study = self._open(create=False)
        self.settings.out.mkdir(parents=True, exist_ok=True)
        self._check_lite()
        self.progress.done = finished_trial_count(study)
        before = self._trials_run_here
        self._trials_until_done(study)
        return self._trials_run_here - before

    def _open(self, *, create: bool) -> Any:
        s = self.settings
        sampler = make_sampler(s.sampler, seed=s.seed, trials=s.trials, encoder=self.space.encode_params)
        study = open_study(s.storage_url, s.study_name, s.objectives, sampler, create=create)
        if self._claims is None:
            self._claims = CandidateClaims(s.storage_url, s.study_name)
        return study

    @staticmethod
    def estimate_trial_seconds(task: Task, settings: FitSettings, *, steps: int = 4) -> float:
        """Seconds one trial will take, roughly: a few real training steps of the teacher, extrapolated to
        the distillation epochs, plus one real export (conversion and timing cost about as much again)."""
        import copy
        import tempfile

        from devicefit.spaces._paddle import import_paddle

        if task.program is not None:  # a program's candidates are not trained: one export, and as much again
            from devicefit.spaces._program_space import export_program_layer

            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                export_program_layer(task.program, task.teacher, Path(folder))
                return 2 * (time.perf_counter() - started)
        paddle = import_paddle()
        model = copy.deepcopy(task.teacher)
        model.train()
        optimizer = paddle.optimizer.AdamW(parameters=model.parameters())
        batch = task.data.train.take(slice(0, settings.distillation.batch_size))
        started = time.perf_counter()
        for _ in range(steps):
            logits = model(*[paddle.to_tensor(x) for x in batch.inputs])
            loss = paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(batch.labels))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
        step_seconds = (time.perf_counter() - started) / steps
        epoch_steps = -(-len(task.data.train) // settings.distillation.batch_size)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            export_inference_model(task.teacher, task.input_spec, Path(folder))
            export_seconds = time.perf_counter() - started
        return step_seconds * epoch_steps * settings.distillation.epochs + 2 * export_seconds

    def teacher_accuracy(self) -> float:
        """The teacher's figure of the run's metric on the validation split (the reference of an accuracy-drop budget)."""
        return self.accuracy.metric(predict_logits(self.task.teacher, self.task.data.val), self.task.data.val.labels)

    def _trials_until_done(self, study: Any) -> bool:
        """Run trials while the study needs more; returns True when the time budget stopped it."""
        s = self.settings
        while fail_dead_trials(study) >= 0 and finished_trial_count(study) + _running_count(study) < s.trials:
            if s.time_seconds is not None and not self._time_for_another_trial(s.time_seconds):
                self.progress.info(
                    f"time budget of {s.time_seconds:.0f} s reached after {self._elapsed():.0f} s: "
                    "no new trial started; writing the front found so far"
                )
                return True
            started = time.monotonic()
            self._one_trial(study)
            self._trial_seconds.append(time.monotonic() - started)
            self._trials_run_here += 1
        return False

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _time_for_another_trial(self, budget_seconds: float) -> bool:
        typical = statistics.median(self._trial_seconds) if self._trial_seconds else 0.0
        return self._elapsed() + typical <= budget_seconds

    def _wait_for_other_workers(self, study: Any, timeout_seconds: float = CLAIM_WAIT_SECONDS) -> None:
        """Before writing outputs, let trials that other workers are running finish (bounded)."""
        deadline = time.monotonic() + timeout_seconds
        announced = False
        while fail_dead_trials(study) >= 0 and _running_count(study) and time.monotonic() < deadline:
            if not announced:
                self.progress.info(f"waiting for {_running_count(study)} trial(s) other workers are running")
                announced = True
            time.sleep(CLAIM_POLL_SECONDS)

    def finish(self, study: Any, *, stopped_by_time: bool = False, export: bool = True) -> FitResult:
        """Write the outputs from the study as it is (with ``export``: models, test accuracy and the report)."""
        import optuna

        from devicefit.search._report import REPORT_FILE, build_report_data, write_report

        s = self.settings
        if export and s.final is not None:
            run_final_rung(self, study)  # the members' files and test figures are then the re-trained models'
        summary = write_outputs(study, s.out, s.device_ids, s.objectives, self.task if export else None,
                                export_models=export, metric=s.metric)
        if export:
            write_report(build_report_data(study, storage=s.storage_url, out=s.out), s.out / REPORT_FILE)
            self.progress.info(f"report: {s.out / REPORT_FILE}")
        states = [t.state for t in study.get_trials(deepcopy=False)]
        return FitResult(
            out=s.out,
            outputs=summary,
            completed=sum(state == optuna.trial.TrialState.COMPLETE for state in states),
            failed=sum(state == optuna.trial.TrialState.FAIL for state in states),
            stopped_by_time=stopped_by_time,
        )

    def _write_run_json(self) -> None:
        s = self.settings
        info = {
            "task": self.task.name,
            "devices": [dataclasses.asdict(d) for d in s.devices],
            "trials": s.trials,
            "seed": s.seed,
            "sampler": s.sampler,
            "budget": dataclasses.asdict(s.budget),
            "time_seconds": s.time_seconds,
            "latency_objective": s.latency_objective,
            "study": {"storage": s.storage or STUDY_FILE, "name": s.study_name},
            "distillation": dataclasses.asdict(s.distillation),
            "metric": as_metric(s.metric).name,
            "final": None if s.final is None else s.final.to_dict(),
            "measure": dataclasses.asdict(s.measure),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = s.out / "run.json"
        path.write_text(json.dumps(info, indent=2) + "\n")

    # -- one trial -----------------------------------------------------------------------------------------

    def _completed_with_key(self, study: Any, key: str) -> Any | None:
        import optuna

        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if trial.user_attrs.get("key") == key and "duplicate_of" not in trial.user_attrs:
                return trial
        return None

    def _result_of_other_trial(self, study: Any, key: str, holder: int, number: int) -> Any | None:
        """The finished trial that built ``key`` for another worker, waiting while it runs (bounded).

        Returns None when that trial failed and this one took the claim over (so this trial builds it).
        """
        import optuna

        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        while True:
            other = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, holder))
            if other.state == optuna.trial.TrialState.COMPLETE:
                return other
            if other.state != optuna.trial.TrialState.RUNNING or time.monotonic() > deadline:
                assert self._claims is not None
                if self._claims.take_over(key, holder, number):
                    return None
                holder = self._claims.claim(key, number) or number
                if holder == number:
                    return None
                continue
            time.sleep(CLAIM_POLL_SECONDS)

    def _tell_duplicate(self, study: Any, trial: Any, earlier: Any) -> None:
        record = TrialRecord.from_dict(earlier.user_attrs[RECORD_ATTR])
        for name, value in record.user_attrs().items():
            trial.set_user_attr(name, value)
        for name, value in earlier.constraints.items():
            trial.set_constraint(name, value)
        trial.set_user_attr("duplicate_of", earlier.number)
        study.tell(trial, earlier.values)
        self.progress.trial(trial.number, record, duplicate_of=earlier.number)

    def _screening_front(self, study: Any, number: int) -> list[tuple[int, list[float]]]:
        """Screening values of the study's other evaluated trials that meet the budget (what can rule out)."""
        import optuna

        if not self.settings.ladder.enabled:
            return []
        others = []
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if trial.number == number or SCREEN_ATTR not in trial.user_attrs or "duplicate_of" in trial.user_attrs:
                continue
            if any(float(v) > 0 for k, v in trial.system_attrs.items() if k.startswith("constraints")):
                continue
            others.append((trial.number, [float(v) for v in trial.user_attrs[SCREEN_ATTR]]))
        return others

    def _one_trial(self, study: Any) -> None:
        import optuna

        trial = ask(study)
        trial.set_user_attr(WORKER_ATTR, this_worker())
        number = trial.number
        key = "?"
        with Heartbeat(study, trial):
            try:
                candidate = self.space.suggest(trial)
                key = candidate.key()
                trial.set_user_attr("key", key)
                trial.set_user_attr("candidate", candidate.to_dict())
                reason = rejection_reason(candidate, self.settings.devices)
                if reason is not None:
                    trial.set_user_attr("rejected", reason)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    self.progress.trial_failed(number, key, f"rejected before any work: {reason}")
                    return
                earlier = self._completed_with_key(study, key)
                if earlier is None:
                    assert self._claims is not None
                    holder = self._claims.claim(key, number)
                    if holder is not None:
                        earlier = self._result_of_other_trial(study, key, holder, number)
                if earlier is not None:
                    self._tell_duplicate(study, trial, earlier)
                    return
                record = self.evaluate(candidate, self._screening_front(study, number))
            except (KeyboardInterrupt, LiteUnavailableError) as exc:
                # Not this candidate's fault: the run stops, and the trial does not use up the budget.
                trial.set_user_attr("error", "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc))
                trial.set_user_attr("interrupted", True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            except Exception as exc:  # noqa: BLE001  (one candidate's failure must not end the search)
                message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
                trial.set_user_attr("error", message)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.progress.trial_failed(number, key, message)
                return
            for name, value in record.user_attrs().items():
                trial.set_user_attr(name, value)
            if record.screening is not None:
                trial.set_user_attr(SCREEN_ATTR, record.screening["values"])
            budget = self.settings.budget
            if not budget.empty:
                violations = budget.violations(
                    accuracy=record.accuracy.accuracy,
                    latency_ms={d: r.latency_ms for d, r in record.latencies.items()},
                    size_bytes=record.size_bytes,
                    teacher_accuracy=study.user_attrs.get("teacher_accuracy"),
                )
                for name, value in zip(budget.names(), violations):
                    trial.set_constraint(name, value)
            for name, value in memory_violations(record.latencies).items():
                trial.set_constraint(name, value)
            study.tell(trial, record.values(self.settings.objectives))
            self.progress.trial(number, record)

    # -- one candidate: screening, then (if promising) promotion ---------------------------------------------

    @property
    def promotion(self) -> DistillationEvaluator:
        """The longer fine-tune of promoted candidates (continues the screening rung's training)."""
        if self._promotion is None:
            extra = dataclasses.replace(self.settings.distillation, epochs=self.settings.ladder.promote_epochs)
            self._promotion = DistillationEvaluator(
                self.task.teacher, self.task.data, extra, metric=self.settings.metric,
                layout=getattr(self.space, "layout", None),
            )
        return self._promotion

    def _screening_evaluator(self, device: DeviceProfile) -> LatencyEvaluator | None:
        """What screens ``device``'s latency, or None when the screening figure is the final one."""
        if not self.settings.ladder.enabled or self.settings.predicted(device):
            return None
        if self._screening is not None:
            return self._screening
        if device.predictor is None:
            return None
        if self._latency is None:
            self.latency  # noqa: B018  (starts the run's own Lite worker, which the predictor converts with)
        if self._owned_worker is None:  # the caller's own latency evaluator and no screening one
            return None
        if self._predictor is None:
            from devicefit.evaluators._predicted import PredictedLatency

            self._predictor = PredictedLatency(self._owned_worker)
        return self._predictor

    def _screening_latency(
        self, screener: LatencyEvaluator | None, artifact: Artifact, device: DeviceProfile, sample_inputs: list[Path]
    ) -> LatencyResult:
        """The screening latency: predicted where a screener is set, else the final figure.

        A candidate the device's predictor cannot price (a kernel its calibration never saw) is measured, as
        promotion would measure it, rather than failing its trial; the progress line says so.
        """
        if screener is None:
            return self.latency.latency(artifact, device, sample_inputs)
        try:
            return screener.latency(artifact, device, sample_inputs)
        except UncoveredKernelError as error:
            self.progress.info(f"  {device.id}: {error}: screened on a measurement instead")
            return self.latency.latency(artifact, device, sample_inputs)

    def screened_devices(self) -> list[str]:
        """Devices whose screening latency is predicted and replaced by the final figure on promotion."""
        ladder = self.settings.ladder
        return [d.id for d in self.settings.devices
                if ladder.enabled and not self.settings.predicted(d) and (
                    self._screening is not None
                    or (d.predictor is not None and (self._latency is None or self._owned_worker is not None))
                )]

    def _margins(self, values: list[float]) -> list[float]:
        relative = {
            d.id: latency_margin(d, final_is_predicted=self._screening_evaluator(d) is None) for d in self.settings.devices
        }
        names = [o.name for o in self.settings.objectives]
        return objective_margins(names, values, self.settings.ladder.accuracy_margin, relative)

    def evaluate(self, candidate: Candidate, others: list[tuple[int, list[float]]] | None = None) -> TrialRecord:
        """Build, fine-tune, deploy (export at the candidate's precision) and measure one candidate.

        With the ladder on, the candidate is first screened (search rung, predicted latency where a device will
        be measured); it is promoted (longer fine-tune, new export, final latency) unless ``others`` (other
        trials' screening values) rule it out: see :mod:`devicefit.search._screening`.
        """
        started = time.perf_counter()
        ladder = self.settings.ladder
        student = self.space.materialize(candidate)
        trained = self.accuracy.evaluate(student, teacher_layers=candidate.layers)
        relative_dir = Path("candidates") / candidate.key()
        directory = self.settings.out / relative_dir
        artifact = self.space.deploy(student, candidate, self.task.input_spec, directory)
        accuracy = self._deployed_accuracy(artifact, trained) if artifact.fidelity_tag else trained
        sample_inputs = []
        for index, array in enumerate(self.task.data.val.take(slice(0, 1)).inputs):
            path = directory / f"sample_input_{index}.npy"
            np.save(path, array)
            sample_inputs.append(path)
        screeners = {device.id: self._screening_evaluator(device) for device in self.settings.devices}
        latencies = {
            device.id: self._screening_latency(screeners[device.id], artifact, device, sample_inputs)
            for device in self.settings.devices
        }
        record = self._record(candidate, student, accuracy, latencies, relative_dir, started)
        if not ladder.enabled:
            return record
        values = record.values(self.settings.objectives)
        decision = screen(values, others or [], maximize=[o.direction == "maximize" for o in self.settings.objectives],
                          margins=self._margins(values))
        screening = {"values": values, "accuracy": accuracy.accuracy, "accuracy_fidelity": accuracy.fidelity,
                     "latency_ms": {d: r.latency_ms for d, r in latencies.items()},
                     "latency_source": {d: r.source_label for d, r in latencies.items()}, "decision": decision.reason}
        if not decision.promote:
            return dataclasses.replace(record, screening=screening, screened_out=decision.reason)
        if ladder.promote_epochs > 0:
            extra = self.promotion.evaluate(student, teacher_layers=candidate.layers)
            trained = AccuracyResult(
                accuracy=extra.accuracy, split=extra.split, fidelity=f"{trained.fidelity}+{ladder.promote_epochs}ep",
                seconds=trained.seconds + extra.seconds, details=extra.details, metric=extra.metric,
            )
            artifact = self.space.deploy(student, candidate, self.task.input_spec, directory)  # the new weights
            accuracy = self._deployed_accuracy(artifact, trained) if artifact.fidelity_tag else trained
            latencies = {
                device.id: self.latency.latency(artifact, device, sample_inputs) for device in self.settings.devices
            }
        else:
            latencies = {
                device.id: self.latency.latency(artifact, device, sample_inputs) if screeners[device.id]
                else latencies[device.id]
                for device in self.settings.devices
            }
        record = self._record(candidate, student, accuracy, latencies, relative_dir, started)
        return dataclasses.replace(record, screening=screening)

    def _record(
        self, candidate: Candidate, student: Any, accuracy: AccuracyResult, latencies: dict[str, Any],
        relative_dir: Path, started: float,
    ) -> TrialRecord:
        directory = self.settings.out / relative_dir
        parameters = int(sum(int(np.prod(p.shape)) for p in student.parameters()))
        nonzero = int(sum(int(np.count_nonzero(p.numpy())) for p in student.parameters()))
        first_nb = directory / f"{self.settings.devices[0].id}.nb"
        return TrialRecord(
            candidate=candidate,
            accuracy=accuracy,
            latencies=latencies,
            size_bytes=latencies[self.settings.devices[0].id].model_bytes,
            parameters=parameters,
            artifact_dir=str(relative_dir),
            seconds=time.perf_counter() - started,
            nonzero_parameters=nonzero,
            compressed_size_bytes=len(zlib.compress(first_nb.read_bytes(), 6)) if first_nb.is_file() else None,
        )

    def _deployed_accuracy(self, artifact: Artifact, trained: AccuracyResult) -> AccuracyResult:
        """The accuracy of what is deployed (int8 program, fp16 or weight-only simulation) on ``val``."""
        started = time.perf_counter()
        val = self.task.data.val
        logits = program_logits(artifact.scoring_dir, val.inputs)
        details = dict(trained.details)
        details["fp32_accuracy"] = trained.accuracy
        if artifact.quantization is not None:
            details["quantization"] = artifact.quantization.to_dict()
        return AccuracyResult(
            accuracy=self.accuracy.metric(logits, val.labels),
            split=trained.split,
            fidelity=f"{trained.fidelity}+{artifact.fidelity_tag}",
            seconds=trained.seconds + time.perf_counter() - started,
            details=details,
            metric=trained.metric,
        )


def load_run_spec(url: str, study_name: str) -> dict[str, Any]:
    """The run spec that ``devicefit fit`` stored in the study, for a joining worker.

    Raises:
        KeyError: No such study, or it was not started by ``devicefit fit``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summaries = optuna.get_all_study_summaries(storage=url, include_best_trial=False)
    except Exception as exc:  # noqa: BLE001  (a bad URL or an unreachable server: say which)
        raise KeyError(f"cannot read studies from {url}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    for summary in summaries:
        if summary.study_name == study_name:
            spec = summary.user_attrs.get("spec")
            if spec is None:
                raise KeyError(f"study '{study_name}' was not started by devicefit fit (no run spec in it)")
            return dict(spec)
    known = ", ".join(s.study_name for s in summaries) or "none"
    raise KeyError(f"no study '{study_name}' in {url} (studies there: {known})")


def _running_count(study: Any) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
