"""The Python API: the command line's verbs as functions, for notebooks and scripts.

    import devicefit.search as dfs

    result = dfs.fit("model.py:build_teacher", "data.npz", devices=["host-x86"], trials=12, out="runs/mine")
    dfs.trials_dataframe("runs/mine")                     # pandas: one row per trial, a column per metric
    dfs.report("runs/mine")                               # runs/mine/report.html
    dfs.export("runs/mine", result.pareto[0].record.key, "deploy/best")

``model`` is a ``file.py:factory`` or ``.pdmodel`` path (as on the command line), a trained
``paddle.nn.Layer`` (with ``input_spec``), or a ready :class:`~devicefit.search.Task`; ``data`` is an
``.npz`` or ``.csv`` path or a :class:`~devicefit.evaluators.TaskData`. Input the user can fix raises
:class:`~devicefit.search._errors.BadInput` (a ``ValueError``) with the same one-line message as the CLI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devicefit.search._errors import BadInput

DEFAULT_DEVICES = ("host-x86",)


def _profiles(devices: Sequence[Any]) -> tuple[Any, ...]:
    from devicefit.device_profiles import DeviceProfile, SchemaError, UnknownDeviceError, load_profile

    profiles = []
    for device in devices:
        if isinstance(device, DeviceProfile):
            profiles.append(device)
            continue
        try:
            profiles.append(load_profile(str(device)))
        except (UnknownDeviceError, SchemaError) as exc:
            raise BadInput(str(exc).strip("'\"")) from None
    return tuple(profiles)


def _task(model: Any, data: Any, example: str | None, input_spec: Sequence[Any] | None,
          devices: tuple[Any, ...], seed: int) -> tuple[Any, dict[str, Any] | None]:
    """The Task, and the run spec a ``devicefit worker`` could rebuild it from (None for in-memory models)."""
    from devicefit.evaluators import DataError, TaskData
    from devicefit.search import _verbs
    from devicefit.search._task import Task
    from devicefit.search._user_model import (
        ModelSourceError,
        TaskSource,
        load_model,
        make_task,
        parse_task_source,
    )

    if isinstance(model, Task):
        return model, None
    if model is not None and not isinstance(model, (str, Path)):
        if input_spec is None or not isinstance(data, TaskData):
            raise BadInput("a model given as a paddle.nn.Layer needs input_spec=[paddle.static.InputSpec...] and data=TaskData")
        source = TaskSource("factory", f"{type(model).__name__}:<in memory>")
        try:
            return make_task(source, model, list(input_spec), data), None
        except ModelSourceError as exc:
            raise BadInput(str(exc)) from None
    in_memory = isinstance(data, TaskData)
    try:
        source = parse_task_source(example if model is None else None, None if model is None else str(model),
                                   None if in_memory or data is None else str(data), data_given_apart=in_memory)
    except ModelSourceError as exc:
        raise BadInput(str(exc)) from None
    if in_memory:
        try:
            loaded, spec = load_model(source)
            task = make_task(source, loaded, spec, data)
        except (ModelSourceError, DataError) as exc:
            raise BadInput(str(exc)) from None
        return task, None
    return _verbs.load_task(source, list(devices), seed=seed), source.to_spec()


def fit(
    model: Any = None,
    data: Any = None,
    *,
    example: str | None = None,
    input_spec: Sequence[Any] | None = None,
    devices: Sequence[Any] = DEFAULT_DEVICES,
    predict: Sequence[str] = (),
    trials: int = 12,
    out: str | Path = "runs/fit",
    seed: int = 0,
    epochs: int | None = None,
    sampler: str = "surrogate",
    budget: Any | None = None,
    time_seconds: float | None = None,
    latency_objective: str = "per-device",
    space: Mapping[str, Any] | None = None,
    ladder: Any | None = None,
    metric: Any = "accuracy",
    final: bool = False,
    final_epochs: int | None = None,
    final_qat_epochs: int | None = None,
    storage: str | None = None,
    study: str = "devicefit",
    quiet: bool = False,
    latency: Any | None = None,
    export: bool = True,
) -> Any:
    """Search, then (with ``export``) export the Pareto members and write ``report.html`` — ``devicefit fit``.

    Args:
        model: ``file.py:factory`` or ``model.pdmodel`` path, a trained ``paddle.nn.Layer``, or a Task.
        data: An ``.npz`` or ``.csv`` path (layouts: ``devicefit fit --help``) or a TaskData; not needed for a
            Task or an example.
        example: A shipped example's name, instead of ``model``.
        input_spec: The Layer's ``paddle.static.InputSpec`` list (only with a Layer).
        devices: Device ids, profile ``.yaml`` paths or DeviceProfile objects.
        predict: Ids of devices whose latency the profile's predictor gives instead of a measurement (devices
            reached by ``none`` are always predicted); every figure of theirs says ``predicted``.
        trials: Trials the study should have.
        out: Output folder (an earlier run there is resumed).
        seed: Seed of the sampler and the fine-tunes.
        epochs: Distillation epochs per candidate (default: the default accuracy rung's,
            ``evaluators._accuracy.DEFAULT_DISTILLATION``).
        sampler: ``surrogate`` (the default), ``nsga2``, ``tpe``, ``gp`` or ``random``.
        budget: A :class:`~devicefit.search._budget.Budget`.
        time_seconds: Wall-clock budget.
        latency_objective: ``per-device`` or ``worst``.
        space: Bounds of the search space (fields of :class:`devicefit.spaces.SpaceBounds`, e.g.
            ``{"min_depth": 2, "precisions": ["fp32", "int8"]}``); the rest are chosen from the model and devices.
        ladder: A :class:`~devicefit.search._screening.LadderSettings` (default: on, 2 promotion epochs);
            ``LadderSettings(enabled=False)`` evaluates every candidate fully.
        metric: What the accuracy objective and every accuracy figure measure: ``accuracy`` (top-1),
            ``macro_f1``, or a callable ``(logits [N, C], labels [N]) -> float`` (higher is better).
        final: After the search, re-train every Pareto member with rung 3 (full fine-tune; QAT for int8), score
            it on test and export the re-trained models (``devicefit fit --final``; :mod:`devicefit.search._final`).
        final_epochs: Epochs of that fine-tune (default: 30, the evaluator's).
        final_qat_epochs: Epochs of QAT after it, for int8 members (default: 5).
        storage: Optuna storage URL (default: ``<out>/study.db``).
        study: Study name.
        quiet: No progress lines.
        latency: A LatencyEvaluator to use instead of Paddle Lite on the devices.
        export: False is ``devicefit search`` (no ``models/``, no report).

    Returns:
        The :class:`~devicefit.search.FitResult`.

    Raises:
        BadInput: Unknown device or example, unusable model, data or output folder.
    """
    from devicefit.evaluators._accuracy import DEFAULT_DISTILLATION
    from devicefit.search._budget import Budget
    from devicefit.search._config import space_overrides
    from devicefit.search._final import FinalSettings
    from devicefit.search._screening import LadderSettings
    from devicefit.search._fit import Fit, FitSettings
    from devicefit.search._progress import Progress
    from devicefit.search.cli import DEFAULT_EXAMPLE, check_output_folder

    if model is None and example is None:
        example = DEFAULT_EXAMPLE
    profiles = _profiles(devices)
    out_path = Path(out)
    if not final and (final_epochs is not None or final_qat_epochs is not None):
        raise BadInput("final_epochs and final_qat_epochs set the length of rung 3: add final=True")
    if final and not export:
        raise BadInput("final=True re-trains the exported members, and search exports nothing: use fit(final=True)")
    check_output_folder(out_path)
    try:
        rung3 = None
        if final:
            lengths = {"epochs": final_epochs, "qat_epochs": final_qat_epochs}
            rung3 = FinalSettings(**{name: value for name, value in lengths.items() if value is not None})
        settings = FitSettings(
            out=out_path, devices=profiles, trials=trials, seed=seed, study_name=study, storage=storage,
            sampler=sampler, budget=budget or Budget(), time_seconds=time_seconds, latency_objective=latency_objective,
            distillation=dataclasses.replace(
                DEFAULT_DISTILLATION, epochs=DEFAULT_DISTILLATION.epochs if epochs is None else epochs, seed=seed
            ),
            predict=tuple(predict),
            space=space_overrides(dict(space or {}), None, source="space"),
            ladder=ladder or LadderSettings(),
            metric=metric,
            final=rung3,
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    task, spec = _task(model, data, example, input_spec, profiles, seed)
    run_spec = None
    if spec is not None:
        limits = settings.budget
        run_spec = {**spec, "devices": [p.id for p in profiles], "trials": trials, "time_seconds": time_seconds,
                    "seed": seed, "sampler": sampler, "epochs": epochs,
                    "max_latency": [f"{device}={ms}ms" for device, ms in limits.latency_ms.items()] or None,
                    "max_size": limits.size_bytes, "max_accuracy_drop": limits.max_accuracy_drop,
                    "latency_objective": latency_objective, "predict": list(predict), "space": settings.space,
                    "promote_epochs": settings.ladder.promote_epochs, "no_ladder": not settings.ladder.enabled, "out": str(out_path.resolve()),
                    "final": final, "final_epochs": final_epochs, "final_qat_epochs": final_qat_epochs}
        if isinstance(metric, str):  # a worker rebuilds a named metric; a callable cannot travel in the spec
            run_spec["metric"] = metric
    try:
        run = Fit(task, settings, progress=Progress(trials, quiet=quiet), latency=latency, run_spec=run_spec)
    except ValueError as exc:  # DataError (the data does not fit the model), BoundsError: the caller's to fix
        raise BadInput(str(exc)) from None
    with run:
        return run.run(export=export)


def search(model: Any = None, data: Any = None, **options: Any) -> Any:
    """``devicefit search``: :func:`fit` without the final export and report (same arguments)."""
    return fit(model, data, **{**options, "export": False})


def report(run: str | Path, *, study: str | None = None, to: str | Path | None = None) -> Path:
    """``devicefit report``: write ``report.html`` (and ``report.json``) of a run from its study; returns the path.

    Raises:
        BadInput: ``run`` is not a run, or its folder is unknown here and ``to`` is not given.
    """
    from devicefit.search._report import REPORT_FILE, build_report_data, write_report
    from devicefit.search._runs import RunNotFoundError, load_run_study, locate_run

    try:
        location = locate_run(run, study)
    except RunNotFoundError as exc:
        raise BadInput(str(exc)) from None
    if to is None and location.out is None:
        raise BadInput(f"the output folder of {location.storage_url} is not on this machine: give to=...")
    target = Path(to) if to is not None else location.out / REPORT_FILE  # type: ignore[operator]
    data = build_report_data(load_run_study(location), storage=location.storage_url, out=location.out)
    return write_report(data, target)


def report_data(run: str | Path, *, study: str | None = None) -> Any:
    """The report's data (:class:`~devicefit.search._report.ReportData`) of a run, without writing anything."""
    from devicefit.search._report import build_report_data
    from devicefit.search._runs import RunNotFoundError, load_run_study, locate_run

    try:
        location = locate_run(run, study)
    except RunNotFoundError as exc:
        raise BadInput(str(exc)) from None
    return build_report_data(load_run_study(location), storage=location.storage_url, out=location.out)


def export(run: str | Path, candidate: str, to: str | Path, *, devices: Sequence[str] | None = None,
           study: str | None = None) -> Any:
    """``devicefit export``: one candidate as a deployable folder; returns the ExportResult.

    Raises:
        BadInput: Unknown run or candidate, unusable ``to``, unknown device.
    """
    from devicefit.search._export import ExportError, export_candidate
    from devicefit.search._runs import RunNotFoundError

    try:
        return export_candidate(run, candidate, Path(to), devices=devices, study_name=study)
    except (RunNotFoundError, ExportError) as exc:
        raise BadInput(str(exc)) from None


def trials_dataframe(run: str | Path, *, study: str | None = None) -> Any:
    """All results of a run as a pandas DataFrame: one row per trial, a column per metric.

    The unit is in each metric's column name (``accuracy_fraction``, ``latency_ms:<device>``, ``size_bytes``
    ...), and ``latency_source:<device>`` (``measured``, ``predicted (calibrated)`` or ``predicted (uncalibrated)``) stands beside
    each latency; ``on_front`` marks the run's Pareto members. See
    :func:`devicefit.search._results.trial_rows` for every column.

    Raises:
        BadInput: ``run`` is not a run.
    """
    import pandas as pd

    from devicefit.search._final import final_outcomes
    from devicefit.search._report import study_objectives
    from devicefit.search._results import front_views, study_devices, test_accuracies, trial_rows, trial_views
    from devicefit.search._runs import RunNotFoundError, load_run_study, locate_run

    try:
        location = locate_run(run, study)
    except RunNotFoundError as exc:
        raise BadInput(str(exc)) from None
    loaded = load_run_study(location)
    views = trial_views(loaded)
    front = [str(view.key) for view in front_views(views, study_objectives(loaded))]
    rows = trial_rows(views, study_devices(loaded, views), front_keys=front,
                      test_accuracy=test_accuracies(loaded, location.out),
                      test_fidelity={key: str(o.fidelity) for key, o in final_outcomes(loaded).items() if o.done})
    frame = pd.DataFrame(rows)
    return frame.set_index("number", drop=False) if not frame.empty else frame
