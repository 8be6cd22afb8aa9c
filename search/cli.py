"""The ``devicefit`` command line.

Only the standard library is imported at module level: ``devicefit --help`` must answer at once, and
Paddle (seconds to import) is loaded only by the commands that build models.

Verbs: ``fit`` (search, then export and report), ``search`` (the search alone), ``report``, ``export``,
``devices list|show|calibrate|check-ops`` (``calibrate`` alone is ``devices calibrate``), ``dashboard`` and
``worker``. Their work lives in other modules
(``_fit``, ``_verbs``, ``_report``, ``_export``, ``_config``, ``_user_model``, ``device_profiles._cli``); this one
declares the arguments and dispatches.

Exit codes:
    0  success
    1  the run failed (the message says why; the traceback is in ``<out>/error.log``); for
       ``devices check-ops``: some op of the model has no kernel on a device; for ``calibrate``: too many of
       the generated models failed, or the fit failed
    2  bad input (unknown device or example, unwritable output folder, invalid number, a config file that does
       not match its schema, a device that can be neither measured nor predicted...), reported in one line
       before anything is written
    3  no candidate met the budget (the closest ones are shown and written to pareto.json)
    130  interrupted (Ctrl-C); the study is saved, rerunning the same command resumes it
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from devicefit.search._errors import BadInput

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUDGET_NOT_MET, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_DEVICE = "host-x86"
DEFAULT_EXAMPLE = "digits-vit"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def _size_bytes(text: str) -> int:
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "b": 1}
    lowered = text.strip().lower()
    for suffix, factor in units.items():
        if lowered.endswith(suffix):
            number, multiplier = lowered[: -len(suffix)], factor
            break
    else:
        number, multiplier = lowered, 1
    try:
        value = float(number) * multiplier
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 2MB, 500KB or 1048576, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got '{text}'")
    return int(value)


def _accuracy_points(text: str) -> float:
    try:
        points = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected accuracy points such as 1 or 1.5, got '{text}'") from None
    if not 0 <= points < 100:
        raise argparse.ArgumentTypeError(f"expected accuracy points in [0, 100), got '{text}'")
    return points / 100.0


def _duration(text: str) -> float:
    from devicefit.search._budget import parse_duration_seconds

    try:
        return parse_duration_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SAMPLER_NAMES = ("nsga2", "surrogate", "tpe", "gp", "random")  # devicefit.search._samplers.SAMPLERS, without importing it
DEFAULT_SAMPLER_NAME = "surrogate"  # devicefit.search._samplers.DEFAULT_SAMPLER, likewise
METRIC_NAMES = ("accuracy", "macro_f1")  # devicefit.evaluators._metrics.BUILTIN_METRICS, without importing it
FINAL_EPOCHS, FINAL_QAT_EPOCHS = 30, 5  # evaluators._final.FINAL_DISTILLATION / QAT_DISTILLATION epochs, likewise


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="devicefit",
        description="Search for the Pareto-optimal compressed versions of a Paddle Transformer for a device.",
        epilog="Exit codes: 0 ok, 1 run failed, 2 bad input, 3 no candidate met the budget, "
        "130 interrupted (rerun the command to resume).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    fit = commands.add_parser(
        "fit",
        help="search, then export the Pareto-optimal models",
        description="Search width/depth of a Transformer for the given devices, then write pareto.csv, "
        "pareto.json and models/<key>/ (model.pdmodel, model.pdiparams, <device>.nb) to --out. "
        "Rerunning the same command resumes the study.",
    )
    fit.add_argument("-c", "--config", type=Path, metavar="FILE",
                     help="a YAML file with these options (keys: the flags' names); flags given here win")
    fit.add_argument("--model", metavar="FILE.py:FUNC|MODEL.pdmodel",
                     help="your trained model: a function returning (paddle.nn.Layer, input spec), or an exported "
                     "inference program (only what needs no code is searched: precision and sparsity); needs --data")
    fit.add_argument("--data", metavar="FILE",
                     help="your data, .npz: train_labels/val_labels/test_labels and train_inputs/val_inputs/test_inputs "
                     "(or <split>_inputs_0, _1 ... for several inputs), or labels and inputs split by --seed; "
                     ".csv: a label column, numeric feature columns, an optional split column")
    fit.add_argument("--example", metavar="NAME",
                     help=f"a shipped example task instead of --model (default: {DEFAULT_EXAMPLE})")
    fit.add_argument("--device", action="append", metavar="ID", dest="devices",
                     help=f"target device profile id or .yaml path; repeat for several (default: {DEFAULT_DEVICE})")
    fit.add_argument("--predict", action="append", metavar="ID",
                     help="predict this target's latency with its profile's predictor instead of measuring it "
                     "(devices reached by 'none' are always predicted); repeat for several")
    fit.add_argument("--trials", type=_positive_int, metavar="N",
                     help="trials the study should have (default: 12, or as many as --time allows)")
    fit.add_argument("--time", type=_duration, metavar="DURATION", dest="time_seconds",
                     help="wall-clock budget such as 30m or 1h30m: no trial starts that would end after it")
    fit.add_argument("--max-latency", action="append", metavar="[DEVICE=]MS", dest="max_latency",
                     help="latency budget, e.g. 8ms (every device) or sd865-cpu-4t=8ms; repeatable")
    fit.add_argument("--max-size", type=_size_bytes, metavar="SIZE", help="size budget of the deployed model, e.g. 2MB")
    fit.add_argument("--max-accuracy-drop", type=_accuracy_points, metavar="POINTS",
                     help="largest accuracy loss against the teacher, in points (1.5 = 1.5 percent points)")
    fit.add_argument("--sampler", choices=SAMPLER_NAMES, default=DEFAULT_SAMPLER_NAME,
                     help=f"search strategy (default: {DEFAULT_SAMPLER_NAME})")
    fit.add_argument("--space", action="append", metavar="KEY=VALUE", dest="space",
                     help="narrow or widen the search space, e.g. min_depth=2, search_heads=false, "
                     "precisions=fp32,int8, sparsities=0,0.5, max_fp32_layers=1; repeatable (keys: "
                     "devicefit.spaces.SpaceBounds; default: from the model and the devices, printed at the start)")
    fit.add_argument("--latency-objective", choices=("per-device", "worst"), default="per-device",
                     help="one latency objective per device, or the slowest device's (default: per-device)")
    fit.add_argument("--out", type=Path, default=Path("runs/fit"), metavar="DIR",
                     help="output folder; an existing run there is resumed (default: runs/fit)")
    fit.add_argument("--storage", metavar="URL",
                     help="Optuna storage URL (e.g. postgresql://user@host/db) for a search shared by workers; "
                     "default: <out>/study.db")
    fit.add_argument("--study", default="devicefit", metavar="NAME", help="study name in the storage (default: devicefit)")
    fit.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the sampler and fine-tunes (default: 0)")
    fit.add_argument("--epochs", type=_non_negative_int, default=None, metavar="N",
                     help="distillation epochs per candidate during the search (default: the default accuracy rung's)")
    fit.add_argument("--promote-epochs", type=_non_negative_int, default=None, metavar="N",
                     help="further distillation epochs for candidates the fidelity ladder promotes (default: 2)")
    fit.add_argument("--no-ladder", action="store_true",
                     help="no fidelity ladder: measure and fine-tune every candidate fully (slower)")
    fit.add_argument("--metric", choices=METRIC_NAMES, default=None,
                     help="what the accuracy objective and every accuracy figure measure (default: accuracy, top-1)")
    fit.add_argument("--final", action="store_true",
                     help="after the search, re-train every Pareto member with the full fine-tune (rung 3; QAT for "
                     "int8), score it on the test split and export the re-trained models (slow: ~1 min per member "
                     "on the digits ViT)")
    fit.add_argument("--final-epochs", type=_positive_int, default=None, metavar="N",
                     help=f"epochs of --final's fine-tune (default: {FINAL_EPOCHS})")
    fit.add_argument("--final-qat-epochs", type=_positive_int, default=None, metavar="N",
                     help=f"epochs of quantization-aware training after it, for int8 members (default: {FINAL_QAT_EPOCHS})")
    fit.add_argument("--quiet", action="store_true", help="no progress lines")
    fit.add_argument("--json", action="store_true", help="print the result as JSON on standard output")
    commands.add_parser(
        "search", parents=[fit], add_help=False,
        help="the search alone: pareto.csv and pareto.json, no models/ export and no report",
        description="Like fit, without the final export (models/, test accuracy) and report.html; "
        "`devicefit export` and `devicefit report` make them later from the study.",
    )
    _add_run_verbs(commands)
    _add_calibrate_parser(commands)

    worker = commands.add_parser(
        "worker",
        help="join a search that `devicefit fit --storage ...` started, on this machine",
        description="Run trials of an existing study until it has its trial count. The task, devices and "
        "settings are read from the study. Candidate files go to the run's output folder (share it between "
        "machines) unless --out is given.",
    )
    worker.add_argument("--storage", required=True, metavar="URL", help="the study's storage URL")
    worker.add_argument("--study", default="devicefit", metavar="NAME", help="study name (default: devicefit)")
    worker.add_argument("--out", type=Path, metavar="DIR", help="folder for candidate files (default: the run's)")
    worker.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def _add_run_verbs(commands: Any) -> None:
    """The verbs that work on a run's study (report, export, dashboard) and on device profiles (devices: list,
    show, calibrate, check-ops)."""
    where = "the run's output folder, or its Optuna storage URL"
    report = commands.add_parser(
        "report", help="rebuild report.html of a run from its study",
        description="Write report.html (self-contained, viewable offline) and report.json from the study alone.",
    )
    report.add_argument("run", metavar="RUN", help=where)
    report.add_argument("--study", metavar="NAME", help="the study, when the storage holds several")
    report.add_argument("--to", type=Path, metavar="FILE", help="where to write it (default: <run>/report.html)")
    report.add_argument("--quiet", action="store_true", help="no progress lines")
    report.add_argument("--json", action="store_true", help="print the result as JSON on standard output")

    export = commands.add_parser(
        "export", help="one candidate of a run, ready to deploy: models, .nb per device, manifest, snippets",
        description="Write model.pdmodel/.pdiparams, one Paddle Lite .nb per device (converted now if the run has "
        "none for it), manifest.json (metrics with units and sources, tool versions, hashes) and deploy snippets.",
    )
    export.add_argument("run", metavar="RUN", help=where)
    export.add_argument("--candidate", required=True, metavar="KEY", help="the candidate's key (or a unique prefix)")
    export.add_argument("--device", action="append", metavar="ID", dest="devices",
                        help="a device to write a .nb for; repeatable (default: the run's devices)")
    export.add_argument("--to", required=True, type=Path, metavar="DIR", help="a new or empty folder")
    export.add_argument("--study", metavar="NAME", help="the study, when the storage holds several")
    export.add_argument("--quiet", action="store_true", help="no progress lines")
    export.add_argument("--json", action="store_true", help="print the result as JSON on standard output")

    devices = commands.add_parser(
        "devices", help="device profiles: list, show one, and which ops of a model each can run",
        description="Device profiles: the shipped ones and the versions `devicefit calibrate` wrote.",
    )
    device_commands = devices.add_subparsers(dest="devices_command", metavar="COMMAND", parser_class=_Parser)
    listing = device_commands.add_parser(
        "list", help="one line per device: reach, predictor calibrated or seeded, and its measured error",
    )
    listing.add_argument("--all-versions", action="store_true", help="every version of every device")
    show = device_commands.add_parser(
        "show", help="everything about one device: reach, precisions, the predictor and its provenance",
    )
    show.add_argument("device", metavar="ID", help="a device profile id")
    _calibrate_arguments(device_commands.add_parser("calibrate", **CALIBRATE_TEXTS))
    check = device_commands.add_parser(
        "check-ops", help="which ops of a model each device's Paddle Lite has kernels for (exit 1: some have none)",
    )
    check.add_argument("model", metavar="MODEL", help="a .pdmodel (its .pdiparams beside it), or a folder holding model.pdmodel")
    check.add_argument("--device", action="append", required=True, metavar="ID", dest="devices", help="repeatable")
    check.add_argument("--json", action="store_true", help="print the result as JSON on standard output")

    dashboard = commands.add_parser("dashboard", help="open optuna-dashboard on a run's study (if installed)")
    dashboard.add_argument("run", metavar="RUN", help=where)
    dashboard.add_argument("--study", metavar="NAME", help="the study, when the storage holds several")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=_positive_int, default=8080, help="port (default: 8080)")
    dashboard.add_argument("--quiet", action="store_true", help="no progress lines")


CALIBRATE_TEXTS = {
    "help": "measure generated models on a device and write a new, calibrated profile version",
    "description": "Time single-kernel probes and whole encoder models on the device (this host, a phone over "
    "adb, a board over ssh), fit its latency predictor, and write <id>.v<N>.yaml (never over an existing file) "
    "with every measurement beside it. `devicefit calibrate` and `devicefit devices calibrate` are the same command.",
}


def _add_calibrate_parser(commands: Any) -> None:
    """``devicefit calibrate --device ID`` (also ``devicefit devices calibrate``, declared with the devices)."""
    _calibrate_arguments(commands.add_parser("calibrate", **CALIBRATE_TEXTS))


def _calibrate_arguments(calibrate: argparse.ArgumentParser) -> None:
    """The arguments of ``calibrate``: fit a device's latency predictor on measurements of the device."""
    calibrate.add_argument("--device", required=True, metavar="ID", help="device profile id or .yaml path")
    calibrate.add_argument("--out", type=Path, metavar="DIR", dest="out_dir",
                           help="folder for the new profile version (default: $DEVICEFIT_PROFILES_DIR or "
                           "~/.devicefit/profiles, where devicefit finds it by id)")
    calibrate.add_argument("--quick", action="store_true", help="a small sweep (about 40 models): a first look only")
    calibrate.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the generated models (default: 0)")
    calibrate.add_argument("--keep", type=Path, metavar="DIR", help="keep the generated models in DIR (default: deleted)")
    calibrate.add_argument("--storage", metavar="URL",
                           help="a search's storage URL: hold its device lease while timing, so that the "
                           "calibration and the search's workers never time models on one device at once")
    calibrate.add_argument("--quiet", action="store_true", help="no progress lines")


def check_output_folder(out: Path) -> None:
    """Fail early, writing nothing, unless ``out`` can hold a run (a new or empty folder, or an earlier run).

    Raises:
        BadInput: ``out`` is a file, a folder with other content, or cannot be created or written.
    """
    if out.exists():
        if not out.is_dir():
            raise BadInput(f"--out {out} exists and is not a folder")
        entries = {p.name for p in out.iterdir()}
        if entries and "run.json" not in entries:
            raise BadInput(f"--out {out} is a folder with other files in it; give a new or empty folder, or a run to resume")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadInput(f"--out {out}: {ancestor} is a file, so the folder cannot be created")
    probe = ancestor / f".devicefit-write-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write in {ancestor} ({exc.strerror})") from None


def check_measurable(device_arg: str, profile: object, *, predicted: bool = False) -> None:
    """Fail early, in one line, unless the device's latency can be had: measured now (adb/ssh reachable, tools
    installed), or, when ``predicted`` (always for reach ``none``), predicted by its profile's predictor.

    Raises:
        BadInput: A predicted device whose profile has no predictor, or a measured one that cannot be reached.
    """
    from devicefit.device_profiles import DeviceProfile
    from devicefit.evaluators._errors import DeviceUnavailableError
    from devicefit.evaluators._latency import check_device

    assert isinstance(profile, DeviceProfile)
    if predicted or profile.reach.kind == "none":
        if profile.predictor is None:
            if profile.reach.kind == "none":
                why = "it is reached by 'none', so its latency can only be predicted, but"
            else:
                why = "--predict asks for its latency to be predicted, but"
            raise BadInput(
                f"--device {device_arg}: {why} its profile has no latency predictor (calibrate the device with "
                "`devicefit calibrate`, or give it a reach that can be measured: local, adb or ssh)"
            )
        return
    try:
        check_device(profile)
    except DeviceUnavailableError as exc:
        raise BadInput(f"--device {device_arg}: {exc}") from None


def _load_devices(device_ids: Sequence[str], predict: Sequence[str] = ()) -> tuple[list[Any], tuple[str, ...]]:
    """The target profiles, each checked measurable or predictable, and the ids of those to predict.

    ``predict`` names targets by profile id or as given to ``--device``; devices reached by ``none`` are
    predicted whether named or not.

    Raises:
        BadInput: An unknown or invalid profile, a device that can be neither measured nor predicted, or a
            ``--predict`` that names no target.
    """
    from devicefit.device_profiles import SchemaError, UnknownDeviceError, load_profile

    devices = []
    predicted: list[str] = []
    wanted = set(predict)
    matched: set[str] = set()
    try:
        for device_id in device_ids:
            profile = load_profile(device_id)
            names = {profile.id, device_id} & wanted
            matched |= names
            predict_it = profile.reach.kind == "none" or bool(names)
            check_measurable(device_id, profile, predicted=predict_it)
            devices.append(profile)
            if predict_it:
                predicted.append(profile.id)
    except (UnknownDeviceError, SchemaError) as exc:
        raise BadInput(str(exc).strip("'\"")) from None
    unknown = sorted(wanted - matched)
    if unknown:
        raise BadInput(f"--predict {unknown[0]}: not one of the --device targets")
    return devices, tuple(predicted)


def _budget(args: argparse.Namespace, device_ids: Sequence[str]) -> Any:
    from devicefit.search._budget import Budget, parse_latency_budget

    latency: dict[str, float] = {}
    try:
        for text in args.max_latency or []:
            latency.update(parse_latency_budget(text, device_ids))
    except ValueError as exc:
        raise BadInput(f"--max-latency: {exc}") from None
    return Budget(latency_ms=latency, size_bytes=args.max_size, max_accuracy_drop=args.max_accuracy_drop)


def _run_spec(args: argparse.Namespace, device_ids: Sequence[str], source: Any) -> dict[str, Any]:
    """What a worker needs to join this search, stored in the study."""
    return {
        **source.to_spec(),
        "devices": list(device_ids),
        "trials": args.trials,
        "time_seconds": args.time_seconds,
        "seed": args.seed,
        "sampler": args.sampler,
        "epochs": args.epochs,
        "promote_epochs": getattr(args, "promote_epochs", None),
        "no_ladder": bool(getattr(args, "no_ladder", False)),
        "metric": getattr(args, "metric", None),
        "final": bool(getattr(args, "final", False)),
        "final_epochs": getattr(args, "final_epochs", None),
        "final_qat_epochs": getattr(args, "final_qat_epochs", None),
        "max_latency": args.max_latency,
        "max_size": args.max_size,
        "max_accuracy_drop": args.max_accuracy_drop,
        "latency_objective": args.latency_objective,
        "space": _space(args),
        "predict": list(args.predict or []),
        "out": str(args.out.resolve()),
    }


def _ladder(args: argparse.Namespace) -> Any:
    from devicefit.search._screening import LadderSettings

    promote = getattr(args, "promote_epochs", None)
    return LadderSettings(enabled=not getattr(args, "no_ladder", False),
                          **({} if promote is None else {"promote_epochs": promote}))


def _final(args: argparse.Namespace) -> Any:
    """Rung 3 after the search (``--final``, ``--final-epochs``, ``--final-qat-epochs``), or None.

    Raises:
        BadInput: An epochs option without ``--final``, or ``--final`` with ``search`` (which exports nothing).
    """
    final = bool(getattr(args, "final", False))
    epochs, qat_epochs = getattr(args, "final_epochs", None), getattr(args, "final_qat_epochs", None)
    if not final:
        given = [flag for flag, value in (("--final-epochs", epochs), ("--final-qat-epochs", qat_epochs)) if value is not None]
        if given:
            raise BadInput(f"{given[0]} sets the length of --final's fine-tune: add --final (or 'final: true' in the config)")
        return None
    if getattr(args, "command", None) == "search":
        raise BadInput("--final re-trains the exported members, and search exports nothing: use devicefit fit --final")
    from devicefit.search._final import FinalSettings

    return FinalSettings(**{name: value for name, value in (("epochs", epochs), ("qat_epochs", qat_epochs)) if value is not None})


def _space(args: argparse.Namespace) -> dict[str, Any]:
    """The space bounds the user set (config file's ``space:``, then ``--space`` flags)."""
    from devicefit.search._config import space_overrides

    try:
        return space_overrides(getattr(args, "space_file", None), getattr(args, "space", None))
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _settings(args: argparse.Namespace, devices: list[Any], predicted: Sequence[str], trials: int) -> Any:
    from devicefit.evaluators._accuracy import DEFAULT_DISTILLATION
    from devicefit.search._fit import FitSettings

    epochs = DEFAULT_DISTILLATION.epochs if args.epochs is None else args.epochs

    try:
        return FitSettings(
            out=args.out,
            devices=tuple(devices),
            trials=trials,
            seed=args.seed,
            study_name=args.study,
            storage=args.storage,
            sampler=args.sampler,
            budget=_budget(args, [d.id for d in devices]),
            time_seconds=args.time_seconds,
            latency_objective=args.latency_objective,
            space=_space(args),
            distillation=dataclasses.replace(DEFAULT_DISTILLATION, epochs=epochs, seed=args.seed),
            predict=tuple(predicted),
            ladder=_ladder(args),
            metric=getattr(args, "metric", None) or "accuracy",  # older run specs have none
            final=_final(args),
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def check_storage(url: str | None) -> None:
    """Fail early unless ``url`` (``--storage``) looks like a database URL Optuna and the leases can open.

    Raises:
        BadInput: It does not.
    """
    if url is None:
        return
    if not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg2://", "mysql")):
        raise BadInput(f"--storage {url}: expected a database URL such as postgresql://user@host/db or sqlite:///file.db")


def _fit(args: argparse.Namespace) -> int:
    """``fit`` and ``search`` (the same run; ``search`` stops before the export and the report)."""
    from devicefit.search import _verbs

    args = _verbs.with_config(args)
    source = _verbs.task_source(args, DEFAULT_EXAMPLE)
    devices, predicted = _load_devices(args.devices or [DEFAULT_DEVICE], args.predict or [])
    check_storage(args.storage)
    if args.sampler == "gp":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise BadInput("--sampler gp needs torch: pip install 'devicefit[gp]' (torch 2.13.0, CPU build)")
    if source.kind == "program" and getattr(args, "final", False):
        raise BadInput(f"--final re-trains the Pareto members, but --model {source.reference} is a program without "
                       "its code, whose candidates are scored as built (Paddle 2.6 cannot train a jit.load-ed "
                       "program); run without --final")
    check_output_folder(args.out)
    settings = _settings(args, devices, predicted, args.trials or 12)

    from devicefit.evaluators import DataError
    from devicefit.search._fit import Fit
    from devicefit.search._progress import Progress
    from devicefit.spaces import BoundsError, UnsupportedModelError

    progress = Progress(settings.trials, quiet=args.quiet)
    task = _verbs.load_task(source, devices, seed=args.seed)
    plan = ""
    if args.trials is None and args.time_seconds is not None:
        estimate = Fit.estimate_trial_seconds(task, settings)
        trials = max(4, int(args.time_seconds // estimate))
        plan = (f"--time {args.time_seconds:.0f} s at about {estimate:.1f} s per trial (estimated on the teacher): "
                f"planning {trials} trials")
        settings = _settings(args, devices, predicted, trials)
        progress.total = trials
    args.trials = settings.trials
    try:
        fit = Fit(task, settings, progress=progress, run_spec=_run_spec(args, [d.id for d in devices], source))
    except UnsupportedModelError as exc:
        raise BadInput(f"--model {source.reference}: {exc}") from None
    except BoundsError as exc:
        raise BadInput(f"--space: {exc}") from None
    except DataError as exc:  # the data does not fit the model: the user's to fix, before any training
        raise BadInput(str(exc)) from None
    progress.info(f"loaded {source.describe()}: {len(task.data.train)} train / {len(task.data.val)} val / "
                  f"{len(task.data.test)} test samples, {task.data.num_classes} classes")
    if plan:
        progress.info(plan)
    with fit:
        try:
            result = fit.run(export=args.command == "fit")
        except KeyboardInterrupt:
            progress.error(f"interrupted: the study is saved ({settings.storage_url}); rerun the same command to resume")
            return EXIT_INTERRUPTED
    code = EXIT_FAILED if result.completed == 0 else EXIT_BUDGET_NOT_MET if not result.outputs.budget_met else EXIT_OK
    if args.json:
        _verbs.print_json(_verbs.fit_result_document(result, code, command=args.command))
    else:
        print_front(result)
    if result.completed == 0:
        progress.error("devicefit: error: no candidate could be evaluated; each trial's reason is in the study")
    return code


def _spec_args(spec: dict[str, Any], args: argparse.Namespace) -> argparse.Namespace:
    """The fit options a worker runs with: the study's run spec, with this worker's storage, study, output."""
    return argparse.Namespace(**{**spec, "out": Path(args.out or spec["out"]), "storage": args.storage,
                                 "study": args.study, "quiet": args.quiet, "space_file": spec.get("space"), "space": None})


def _worker(args: argparse.Namespace) -> int:
    check_storage(args.storage)
    from devicefit.search._fit import Fit, load_run_spec
    from devicefit.search._progress import Progress

    try:
        spec = load_run_spec(args.storage, args.study)
    except KeyError as exc:
        raise BadInput(str(exc).strip("'\"")) from None
    spec_args = _spec_args(spec, args)
    devices, predicted = _load_devices(spec["devices"], spec.get("predict") or [])  # older specs have none
    settings = _settings(spec_args, devices, predicted, spec["trials"])
    progress = Progress(settings.trials, quiet=args.quiet)

    from devicefit.search import _verbs
    from devicefit.search._user_model import task_source_from_spec

    task = _verbs.load_task(task_source_from_spec(spec), devices, seed=spec["seed"])
    with Fit(task, settings, progress=progress) as fit:
        try:
            ran = fit.work()
        except KeyboardInterrupt:
            progress.error("interrupted: this worker's trial is marked failed; the others go on")
            return EXIT_INTERRUPTED
    progress.info(f"worker done: {ran} trial(s) ran here; the study has its {settings.trials} trials")
    return EXIT_OK


def print_front(result: object) -> None:
    """The Pareto front as a table on standard output."""
    from devicefit.search._fit import FitResult
    from devicefit.search._progress import format_bytes

    assert isinstance(result, FitResult)
    summary = result.outputs
    if not summary.budget_met:
        print(f"\nno candidate of {result.completed} completed trials meets the budget; the closest "
              f"(violation relative to each limit, > 0 means missed):")
        for item in summary.closest:
            misses = ", ".join(f"{name} {value:+.1%}" for name, value in item.constraints.items())
            latencies = "  ".join(
                f"{device} {r.latency_ms:.3f} ms {r.source_label}" for device, r in item.record.latencies.items()
            )
            print(f"  {item.record.key:<34} val {item.record.accuracy.accuracy:.4f}  {latencies}  [{misses}]")
        return
    print(f"\n{len(result.pareto)} Pareto-optimal of {result.completed} completed trials "
          f"({result.failed} failed); written to {result.out}/")
    for member in result.pareto:
        record = member.record
        latencies = "  ".join(
            f"{device} {r.latency_ms:.3f} ms {r.source_label}" for device, r in record.latencies.items()
        )
        test = "" if member.test_accuracy is None else f"  test {member.test_accuracy:.4f}"
        if member.retrained:
            gain = (member.final.qat or {}).get("gain_test")  # type: ignore[union-attr]
            test += f" ({member.test_fidelity}{'' if gain is None else f', QAT over PTQ {gain:+.4f}'})"
        elif member.final is not None:
            test += " (rung 3 failed: search figures)"
        print(f"  {record.key:<34} val {record.accuracy.accuracy:.4f} ({record.accuracy.fidelity}){test}  "
              f"{latencies}  {format_bytes(record.size_bytes)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``devicefit`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to tell the flags given from a config file's
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    if args.command == "devices" and args.devices_command is None:
        parser.error("devices: name a command (list, show, calibrate, check-ops)")
    handlers = {"fit": _fit, "search": _fit, "worker": _worker, "report": _verb("report"), "export": _verb("export"),
                "devices": _verb("devices"), "calibrate": _verb("calibrate"), "dashboard": _verb("dashboard")}
    try:
        return handlers[args.command](args)
    except BadInput as exc:
        print(f"devicefit: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("devicefit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `devicefit devices list | head`: the reader left; nothing is wrong with the run
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (so the interpreter's final flush does not fail again)
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001  (never a traceback on the terminal; it goes to error.log)
        return _report_failure(exc, getattr(args, "out", None))


def _verb(name: str) -> Any:
    """The handler ``devicefit.search._verbs.<name>``, imported when the verb runs."""

    def handler(args: argparse.Namespace) -> int:
        from devicefit.search import _verbs

        return int(getattr(_verbs, name)(args))

    return handler


def _report_failure(exc: BaseException, out: Path | None) -> int:
    details = "".join(traceback.format_exception(exc))
    where = ""
    if os.environ.get("DEVICEFIT_DEBUG"):
        print(details, file=sys.stderr)
    elif out is not None and out.is_dir():
        (out / "error.log").write_text(details)
        where = f" (traceback in {out / 'error.log'})"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print(f"devicefit: error: {type(exc).__name__}: {message}{where}", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
