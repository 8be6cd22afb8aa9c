"""Rung 3 inside a fit, opt-in (``devicefit fit --final``): the full fine-tune of every Pareto member.

After the search, each member of the front is built again from the teacher (the same candidate, the same
inherited weights) and trained for the full budget of rung 3 (:mod:`devicefit.evaluators._final`):

- fp32 and fp16 members (and weight-only ones): :class:`~devicefit.evaluators.FinalEvaluator`, the full
  distillation fine-tune, then exported as the candidate deploys (fp16 and weight-only with the simulation
  program that reproduces the device's numerics, as in the search);
- int8 members: :class:`~devicefit.evaluators.QuantAwareEvaluator`, the full fp32 fine-tune, then
  quantization-aware training with distillation; the exported int8 program is the model that was trained
  (not a post-training quantization of it). Blocks the candidate keeps in fp32 stay unquantized. On the way
  it measures plain PTQ of the same fine-tuned student, and what QAT gains over it (val and test).

Both figures of a member are of its deployed program, run in Paddle: the validation figure, and the held-out
test figure, each labelled with the rung (the evaluator's name, e.g. ``final-distill-30ep`` or
``final-distill-30ep+qat-distill-5ep``, plus ``+fp16-sim`` where the numerics are simulated). The search's
figures (``distill-1ep+2ep`` on val) stay what the front was chosen by: rung 3 never changes the front.

**Latency is obtained again** for every device, through the run's own latency evaluator, on the re-trained
program: a measured device is measured again (the latency cache keys on the program's content, weights
included, so the search's figure is not reused), a predicted device predicted again, labelled as every figure
is (``measured``, ``predicted (calibrated)`` ...). That is also what converts the member's ``.nb`` files, so
the figure is of the very bytes that are shipped. An fp32/fp16 member's structure is unchanged, so its figure
moves only by measurement noise; an int8 member's QAT program quantizes the linear and convolution layers,
not the attention products that the search's PTQ program quantizes, so its latency can really differ.

The re-trained member lives in ``candidates/<key>/final/``; the run's ``models/<key>/`` and ``devicefit
export`` take it from there. Nothing is lost when rung 3 fails for a member: it keeps its search figures and
files, and its outcome says why. Outcomes are stored on the study (user attribute ``final``: key ->
:meth:`FinalOutcome.to_dict`) after each member, so ``devicefit report`` rebuilds them from the study alone,
and rerunning the fit does not train again a member that rung 3 finished with the same settings.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devicefit.evaluators._final import FINAL_DISTILLATION, QAT_DISTILLATION
from devicefit.search._records import FINAL_ATTR

#: The folder of a member's re-trained files, inside its candidate folder.
FINAL_DIR = "final"


@dataclasses.dataclass(frozen=True)
class FinalSettings:
    """Rung 3 of a fit.

    Attributes:
        epochs: Epochs of the full distillation fine-tune (every member; int8 ones before QAT).
        qat_epochs: Epochs of quantization-aware training that follow, for int8 members.
    """

    epochs: int = FINAL_DISTILLATION.epochs
    qat_epochs: int = QAT_DISTILLATION.epochs

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"final epochs must be >= 1, got {self.epochs}")
        if self.qat_epochs < 1:
            raise ValueError(f"final QAT epochs must be >= 1, got {self.qat_epochs}")

    def distillation(self, seed: int) -> Any:
        """The full fine-tune (the evaluator's, with these epochs and the run's seed)."""
        return dataclasses.replace(FINAL_DISTILLATION, epochs=self.epochs, seed=seed)

    def qat(self, seed: int) -> Any:
        """The QAT fine-tune of int8 members."""
        return dataclasses.replace(QAT_DISTILLATION, epochs=self.qat_epochs, seed=seed)

    def describe(self) -> str:
        """One line for the banner."""
        d, q = FINAL_DISTILLATION, QAT_DISTILLATION
        return (
            f"rung 3 on every Pareto member after the search: {self.epochs} distillation epoch(s) (lr {d.learning_rate:g}); "
            f"int8 members then {self.qat_epochs} epoch(s) of QAT (lr {q.learning_rate:g}); scored on val and test, "
            "latency measured or predicted again on the re-trained model"
        )

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FinalOutcome:
    """What rung 3 did for one Pareto member (plain, JSON-ready data).

    Attributes:
        key: The candidate's key.
        trial: The trial that evaluated it in the search.
        status: ``done`` or ``failed``.
        settings: The :class:`FinalSettings` and the run's seed and metric it ran with.
        metric: The metric of ``val`` and ``test``.
        fidelity: The rung's label (e.g. ``final-distill-30ep``); every figure below is at this rung.
        val: The re-trained deployed program's figure on the validation split.
        test: ... and on the held-out test split (reported, never used for a choice).
        search_test: The search's exported program (before rung 3) on the test split, for comparison.
        qat: For int8 members: ``float_val`` (the fp32 student after the full fine-tune), ``ptq_val``,
            ``qat_val``, ``gain_val`` (QAT minus PTQ of the same fine-tuned student, same quantizers), and
            ``ptq_test``, ``qat_test``, ``gain_test``: the evaluator's figures, in Paddle's dygraph simulation.
        latencies: Device id -> the re-trained program's latency result (``LatencyResult.to_dict``).
        size_bytes: The first device's ``.nb`` of the re-trained program, in bytes.
        artifact_dir: Folder of the re-trained files, relative to the run's output folder.
        seconds: Wall time of rung 3 for this member.
        error: Why it failed (one line), when it did.
    """

    key: str
    trial: int
    status: str
    settings: Mapping[str, Any]
    metric: str
    fidelity: str | None = None
    val: float | None = None
    test: float | None = None
    search_test: float | None = None
    qat: Mapping[str, float] | None = None
    latencies: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    size_bytes: int | None = None
    artifact_dir: str | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "settings": dict(self.settings),
            "qat": None if self.qat is None else dict(self.qat),
            "latencies": {device: dict(result) for device, result in self.latencies.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinalOutcome:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in names})


def final_outcomes(study: Any) -> dict[str, FinalOutcome]:
    """Candidate key -> what rung 3 did for it, as stored on ``study`` (empty when it never ran)."""
    stored = study.user_attrs.get(FINAL_ATTR) or {}
    return {str(key): FinalOutcome.from_dict(value) for key, value in stored.items()}


def _settings_of(fit: Any) -> dict[str, Any]:
    from devicefit.evaluators._metrics import as_metric

    s = fit.settings
    return {**s.final.to_dict(), "seed": s.seed, "metric": as_metric(s.metric).name}


def run_final_rung(fit: Any, study: Any) -> dict[str, FinalOutcome]:
    """Rung 3 on every Pareto member of ``study`` (see the module docstring); returns the outcomes by key.

    Args:
        fit: The :class:`~devicefit.search._fit.Fit` that ran the search (its task, space, settings, latency
            evaluator and progress).
        study: Its Optuna study; each outcome is stored on it as soon as it is known.
    """
    from devicefit.search._outputs import evaluated_records, pareto_records

    s = fit.settings
    front = pareto_records(evaluated_records(study), s.objectives)
    settings = _settings_of(fit)
    stored = {key: outcome.to_dict() for key, outcome in final_outcomes(study).items()}
    outcomes: dict[str, FinalOutcome] = {}
    if front:
        fit.progress.info(f"rung 3: full fine-tune of the {len(front)} Pareto member(s), one at a time "
                          f"({s.final.epochs} epoch(s) each; int8: then {s.final.qat_epochs} QAT epoch(s))")
    failed = 0
    for index, item in enumerate(front, 1):
        key = item.record.key
        prefix = f"rung 3 [{index}/{len(front)}] {key}"
        earlier = stored.get(key)
        if earlier is not None and _reusable(FinalOutcome.from_dict(earlier), settings, s.out):
            outcomes[key] = FinalOutcome.from_dict(earlier)
            fit.progress.info(f"{prefix}: done by an earlier run with the same settings ({earlier['fidelity']}), kept")
            continue
        kind = "full fine-tune, then QAT" if item.record.candidate.precision == "int8" else "full fine-tune"
        fit.progress.info(f"{prefix}: {kind} ...")
        started = time.perf_counter()
        try:
            outcome = _one_member(fit, item, settings)
        except KeyboardInterrupt:
            shutil.rmtree(s.out / item.record.artifact_dir / FINAL_DIR, ignore_errors=True)
            raise
        except Exception as exc:  # noqa: BLE001  (one member's failure costs its rung 3, never the run's outputs)
            shutil.rmtree(s.out / item.record.artifact_dir / FINAL_DIR, ignore_errors=True)
            message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
            outcome = FinalOutcome(key, item.trial, "failed", settings, settings["metric"],
                                   seconds=time.perf_counter() - started, error=message)
            failed += 1
            fit.progress.info(f"{prefix}: FAILED after {outcome.seconds:.0f}s: {message}; "
                              "it keeps its search figures and files")
        else:
            fit.progress.info(f"{prefix}: {describe_outcome(outcome, item.record)}")
        outcomes[key] = outcome
        stored[key] = outcome.to_dict()
        study.set_user_attr(FINAL_ATTR, stored)
    if failed:
        fit.progress.info(f"rung 3 failed for {failed} of {len(front)} member(s): they keep their search figures "
                          "(the reasons are above, and in pareto.json)")
    return outcomes


def _reusable(outcome: FinalOutcome, settings: Mapping[str, Any], out: Path) -> bool:
    from devicefit.spaces._export import MODEL_FILE

    return (outcome.done and dict(outcome.settings) == dict(settings) and outcome.artifact_dir is not None
            and (out / outcome.artifact_dir / MODEL_FILE).is_file())


def describe_outcome(outcome: FinalOutcome, record: Any) -> str:
    """The progress line's figures: search -> rung 3, on val and test, and the re-trained model's latency."""
    from devicefit.search._results import latency_provenance

    search_val = record.accuracy.accuracy
    parts = [f"val {search_val:.4f} -> {outcome.val:.4f}"]
    if outcome.test is not None:
        before = "" if outcome.search_test is None else f"{outcome.search_test:.4f} -> "
        parts.append(f"test {before}{outcome.test:.4f}")
    parts.append(f"({outcome.fidelity})")
    if outcome.qat is not None and outcome.qat.get("gain_test") is not None:
        parts.append(f"QAT over PTQ {outcome.qat['gain_test']:+.4f} test")
    for device, latency in outcome.latencies.items():
        parts.append(f"{device} {float(latency['latency_ms']):.3f} ms ({latency_provenance(latency)})")
    parts.append(f"{outcome.seconds:.1f}s")
    return "  ".join(parts)


def _keep_fp32_blocks(space: Any, student: Any, candidate: Any) -> None:
    """Leave the linear layers of the blocks ``candidate`` keeps in fp32 out of QAT (``skip_quant``)."""
    if not candidate.fp32_layers or not hasattr(space, "fp32_weight_names"):
        return
    layers = dict(student.named_sublayers())
    for path in space.fp32_weight_names(student, candidate):  # "encoder.layers.0.linear1.weight"
        layers[path.rsplit(".", 1)[0]].skip_quant = True


def _one_member(fit: Any, item: Any, settings: Mapping[str, Any]) -> FinalOutcome:
    from devicefit.evaluators._final import FinalEvaluator, QuantAwareEvaluator
    from devicefit.evaluators._metrics import as_metric
    from devicefit.spaces._export import Artifact, program_logits
    from devicefit.spaces._precision import SIMULATION_DIR

    started = time.perf_counter()
    s, task = fit.settings, fit.task
    record, candidate = item.record, item.record.candidate
    metric = as_metric(s.metric)
    search_dir = s.out / record.artifact_dir
    relative = Path(record.artifact_dir) / FINAL_DIR
    directory = s.out / relative
    shutil.rmtree(directory, ignore_errors=True)
    layout = getattr(fit.space, "layout", None)
    data = task.data

    student = fit.space.materialize(candidate)
    qat: dict[str, float] | None = None
    if candidate.precision == "int8":
        evaluator = QuantAwareEvaluator(task.teacher, data, s.final.distillation(s.seed), qat_settings=s.final.qat(s.seed),
                                        metric=metric, layout=layout)
        _keep_fp32_blocks(fit.space, student, candidate)
        trained = evaluator.evaluate(student, teacher_layers=candidate.layers)
        held_out = evaluator.test(student)
        evaluator.export(student, task.input_spec, directory)
        artifact = Artifact.from_directory(directory, precision="int8")
        qat = {
            "float_val": trained.details["float_accuracy"], "ptq_val": trained.details["ptq_accuracy"],
            "qat_val": trained.accuracy, "gain_val": trained.details["qat_gain_over_ptq"],
            "ptq_test": held_out.details.get("ptq_accuracy"), "qat_test": held_out.accuracy,
            "gain_test": held_out.details.get("qat_gain_over_ptq"),
        }
    else:
        evaluator = FinalEvaluator(task.teacher, data, s.final.distillation(s.seed), metric=metric, layout=layout)
        trained = evaluator.evaluate(student, teacher_layers=candidate.layers)
        artifact = fit.space.deploy(student, candidate, task.input_spec, directory)
    fidelity = trained.fidelity + (f"+{artifact.fidelity_tag}" if artifact.fidelity_tag else "")
    # Both figures are of the deployed program (or its simulation), as the search's are.
    val = metric(program_logits(artifact.scoring_dir, data.val.inputs), data.val.labels)
    test = metric(program_logits(artifact.scoring_dir, data.test.inputs), data.test.labels)
    search_scoring = search_dir / SIMULATION_DIR if (search_dir / SIMULATION_DIR).is_dir() else search_dir
    search_test = metric(program_logits(search_scoring, data.test.inputs), data.test.labels)

    samples = []
    for sample in sorted(search_dir.glob("sample_input_*.npy")):
        shutil.copy2(sample, directory / sample.name)
        samples.append(directory / sample.name)
    latencies = {device.id: fit.latency.latency(artifact, device, samples) for device in s.devices}
    return FinalOutcome(
        key=record.key,
        trial=item.trial,
        status="done",
        settings=settings,
        metric=metric.name,
        fidelity=fidelity,
        val=val,
        test=test,
        search_test=search_test,
        qat=qat,
        latencies={device: result.to_dict() for device, result in latencies.items()},
        size_bytes=latencies[s.devices[0].id].model_bytes,
        artifact_dir=str(relative),
        seconds=time.perf_counter() - started,
    )
