"""The fit: search the space with Optuna (ask/tell), evaluate each candidate for real, write the front.

One trial: suggest a Candidate -> materialize the student (inheriting the teacher's weights) -> short
distillation fine-tune, scored on the validation split -> export the fine-tuned student -> convert with
Paddle Lite for each device and measure -> tell Optuna. Everything is recorded on the trial.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.device_profiles._profile import DeviceProfile
from devicefit.evaluators._accuracy import DistillationEvaluator, DistillationSettings
from devicefit.evaluators._latency import LatencyEvaluator, MeasureSettings, host_latency
from devicefit.evaluators._lite_client import LiteUnavailableError
from devicefit.search._outputs import ParetoMember, write_outputs
from devicefit.search._progress import Progress
from devicefit.search._records import RECORD_ATTR, TrialRecord, objectives_for
from devicefit.search._study import finished_trial_count, open_study
from devicefit.search._task import Task
from devicefit.spaces._candidate import Candidate
from devicefit.spaces._export import export_inference_model
from devicefit.spaces._space import SearchSpace, SpaceBounds, TransformerEncoderSpace

STUDY_FILE = "study.db"


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """Settings of one fit. Every field has a default chosen for a hands-off run.

    Attributes:
        out: Output folder (created; an existing run there is resumed).
        devices: Target devices; one latency objective each.
        trials: Finished trials the study should have when the run ends (a resumed run adds the rest).
        seed: Seeds the sampler, the fine-tunes and the calibration batch.
        study_name: Name of the Optuna study inside the storage.
        distillation: The accuracy rung used during the search.
        measure: The timing protocol of measured latency.
        calibration_samples: Training samples used to measure importance.
        population_size: NSGA-II population; ``None`` picks a third of the trials, between 4 and 50.
        predict: Ids of devices whose latency is predicted by their profile's predictor although they could
            be measured; devices reached by ``none`` are always predicted.
    """

    out: Path
    devices: tuple[DeviceProfile, ...]
    trials: int = 12
    seed: int = 0
    study_name: str = "devicefit"
    distillation: DistillationSettings = DistillationSettings()
    measure: MeasureSettings = MeasureSettings()
    calibration_samples: int = 256
    population_size: int | None = None
    predict: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if not self.devices:
            raise ValueError("at least one device is needed")
        ids = [d.id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a device is listed twice: {ids}")
        unknown = set(self.predict) - set(ids)
        if unknown:
            raise ValueError(f"predict names devices that are not targets: {sorted(unknown)}")
        for device in self.devices:
            if self.predicted(device) and device.predictor is None:
                raise ValueError(f"{device.id} has no latency predictor, so its latency cannot be predicted")

    def predicted(self, device: DeviceProfile) -> bool:
        """Whether ``device``'s latency is predicted (else measured)."""
        return device.reach.kind == "none" or device.id in self.predict

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.devices)

    @property
    def nsga2_population(self) -> int:
        return self.population_size or int(np.clip(self.trials // 3, 4, 50))


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What a fit produced.

    Attributes:
        out: The output folder.
        pareto: The Pareto-optimal candidates, best accuracy first.
        completed: Trials that evaluated a candidate (duplicates included).
        failed: Trials that failed; the reason is on each trial (user attribute ``error``).
    """

    out: Path
    pareto: list[ParetoMember]
    completed: int
    failed: int


def common_precisions(devices: tuple[DeviceProfile, ...]) -> tuple[str, ...]:
    """Precisions every device runs with real kernels (fp32 always)."""
    shared = set(devices[0].precisions)
    for device in devices[1:]:
        shared &= set(device.precisions)
    return tuple(p for p in ("fp32", "fp16", "int8") if p in shared)


def rejection_reason(candidate: Candidate, devices: tuple[DeviceProfile, ...]) -> str | None:
    """Why a device cannot run ``candidate``, or ``None`` when all can."""
    for device in devices:
        if candidate.precision not in device.precisions:
            return f"{device.id} has no {candidate.precision} kernels (its profile lists {list(device.precisions)})"
    return None


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
        latency: The latency evaluator; by default the host runner through a Lite worker.
        space: The search space; by default a :class:`TransformerEncoderSpace` of the teacher.
    """

    def __init__(
        self,
        task: Task,
        settings: FitSettings,
        *,
        progress: Progress | None = None,
        latency: LatencyEvaluator | None = None,
        space: SearchSpace | None = None,
    ) -> None:
        self.task = task
        self.settings = settings
        self.progress = progress or Progress(settings.trials)
        self._latency = latency
        self._owned_worker: Any = None
        if space is None:
            inputs, labels = _calibration_batch(task, settings.calibration_samples, settings.seed)
            bounds = SpaceBounds(precisions=common_precisions(settings.devices))  # type: ignore[arg-type]
            space = TransformerEncoderSpace(task.teacher, inputs, labels, bounds=bounds)
        self.space = space
        self.accuracy = DistillationEvaluator(task.teacher, task.data, settings.distillation)

    @property
    def latency(self) -> LatencyEvaluator:
        if self._latency is None:
            from devicefit.evaluators._lite_client import LiteWorker
            from devicefit.evaluators._predicted import LatencyByDevice, PredictedLatency

            self._owned_worker = LiteWorker()
            measured = host_latency(self._owned_worker, self.settings.measure)
            predicted = PredictedLatency(self._owned_worker)
            self._latency = LatencyByDevice(
                {d.id: predicted if self.settings.predicted(d) else measured for d in self.settings.devices}
            )
        return self._latency

    def _check_lite(self) -> None:
        """Start the Lite worker this run owns now, so that a broken setup fails before the first trial."""
        if self._latency is None:
            self.latency  # noqa: B018  (builds the default evaluator and its worker)
        if self._owned_worker is not None:
            self._owned_worker.hello()

    def close(self) -> None:
        """Stop the Lite worker this run started, if any."""
        if self._owned_worker is not None:
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
        space = self.space
        rows = [("task", f"{self.task.name}: {self.task.description}"), ("devices", ", ".join(s.device_ids))]
        if isinstance(space, TransformerEncoderSpace):
            st = space.structure
            rows.append(
                (
                    "space",
                    f"depth {space.bounds.min_depth}..{st.num_layers}, heads {space.bounds.min_heads}..{st.num_heads} "
                    f"per layer, FFN {space.ffn_step}..{st.ffn_size} step {space.ffn_step} per layer, "
                    f"precision {'/'.join(space.bounds.precisions)}",
                )
            )
        rows += [
            ("trials", f"{s.trials} (NSGA-II, population {s.nsga2_population}, seed {s.seed})"),
            ("accuracy", f"{s.distillation.fidelity} logit distillation on train, scored on val"),
            ("latency", self._describe_latency()),
            ("output", str(s.out)),
        ]
        return rows

    def _describe_latency(self) -> str:
        s = self.settings
        parts = []
        measured = [d.id for d in s.devices if not s.predicted(d)]
        if measured:
            parts.append(
                f"{', '.join(measured)} measured with Paddle Lite: {s.measure.warmup} warm-up, {s.measure.blocks}x"
                f"{s.measure.runs_per_block} timed runs, min of block medians"
            )
        for device in s.devices:
            if s.predicted(device):
                parts.append(f"{device.id} PREDICTED: {device.describe_predictor()}")
        return "; ".join(parts)

    def run(self) -> FitResult:
        """Search until the study has ``settings.trials`` finished trials, then write the outputs."""
        s = self.settings
        s.out.mkdir(parents=True, exist_ok=True)
        study = open_study(s.out / STUDY_FILE, s.study_name, objectives_for(s.device_ids), s.seed, s.nsga2_population)
        self._write_run_json()
        self.progress.banner(f"devicefit fit: {self.task.name} -> {', '.join(s.device_ids)}", self.describe())
        self._check_lite()
        already = finished_trial_count(study)
        if already:
            self.progress.info(f"resuming the study in {s.out / STUDY_FILE}: {already} trials already finished")
        else:
            for candidate in self.space.warm_start()[: s.trials]:
                study.enqueue_trial(self.space.params_for(candidate), skip_if_exists=True)
        while finished_trial_count(study) < s.trials:
            self._one_trial(study)
        return self.finish(study)

    def finish(self, study: Any) -> FitResult:
        """Write the Pareto outputs from the study as it is."""
        import optuna

        members = write_outputs(study, self.settings.out, self.settings.device_ids, self.task)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        return FitResult(
            out=self.settings.out,
            pareto=members,
            completed=sum(state == optuna.trial.TrialState.COMPLETE for state in states),
            failed=sum(state == optuna.trial.TrialState.FAIL for state in states),
        )

    def _write_run_json(self) -> None:
        s = self.settings
        info = {
            "task": self.task.name,
            "devices": [dataclasses.asdict(d) for d in s.devices],
            "trials": s.trials,
            "seed": s.seed,
            "study": {"storage": STUDY_FILE, "name": s.study_name},
            "distillation": dataclasses.asdict(s.distillation),
            "measure": dataclasses.asdict(s.measure),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = s.out / "run.json"
        path.write_text(json.dumps(info, indent=2) + "\n")

    def _completed_by_key(self, study: Any) -> dict[str, Any]:
        import optuna

        done = {}
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            key = trial.user_attrs.get("key")
            if key is not None and "duplicate_of" not in trial.user_attrs:
                done.setdefault(key, trial)
        return done

    def _one_trial(self, study: Any) -> None:
        import optuna

        trial = study.ask()
        number = trial.number
        key = "?"
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
            earlier = self._completed_by_key(study).get(key)
            if earlier is not None:
                record = TrialRecord.from_dict(earlier.user_attrs[RECORD_ATTR])
                for name, value in record.user_attrs().items():
                    trial.set_user_attr(name, value)
                trial.set_user_attr("duplicate_of", earlier.number)
                study.tell(trial, earlier.values)
                self.progress.trial(number, record, duplicate_of=earlier.number)
                return
            record = self.evaluate(candidate)
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
        study.tell(trial, record.values(self.settings.device_ids))
        self.progress.trial(number, record)

    def evaluate(self, candidate: Candidate) -> TrialRecord:
        """Build, fine-tune, export and measure one candidate."""
        started = time.perf_counter()
        student = self.space.materialize(candidate)
        accuracy = self.accuracy.evaluate(student)
        relative_dir = Path("candidates") / candidate.key()
        directory = self.settings.out / relative_dir
        artifact = export_inference_model(student, self.task.input_spec, directory)
        sample_inputs = []
        for index, array in enumerate(self.task.data.val.take(slice(0, 1)).inputs):
            path = directory / f"sample_input_{index}.npy"
            np.save(path, array)
            sample_inputs.append(path)
        latencies = {
            device.id: self.latency.latency(artifact, device, sample_inputs) for device in self.settings.devices
        }
        parameters = int(sum(int(np.prod(p.shape)) for p in student.parameters()))
        return TrialRecord(
            candidate=candidate,
            accuracy=accuracy,
            latencies=latencies,
            size_bytes=latencies[self.settings.devices[0].id].model_bytes,
            parameters=parameters,
            artifact_dir=str(relative_dir),
            seconds=time.perf_counter() - started,
        )
