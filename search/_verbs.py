"""What the command line's verbs do beyond ``fit``'s loop: config files, user models, ``report``, ``export``,
``devices list|show|calibrate|check-ops`` (``calibrate`` also stands alone) and ``dashboard``. ``cli`` only declares their arguments and calls
these functions (``devices list|show`` and ``calibrate`` hand over to :mod:`devicefit.device_profiles._cli`).

Like ``cli``, this module imports only the standard library at module level; each function imports what it
needs. Input the user can fix raises :class:`~devicefit.search._errors.BadInput` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from devicefit.search._errors import BadInput

EXIT_OK = 0
DASHBOARD_INSTALL = "pip install optuna-dashboard"


def print_json(document: Any) -> None:
    """The machine-readable result of a command, on standard output."""
    print(json.dumps(document, indent=2, default=str))


def _say(args: argparse.Namespace) -> Any:
    quiet = getattr(args, "quiet", False)
    return (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr, flush=True))


# --------------------------------------------------------------------------------------------------
# fit and search


def with_config(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the options of ``-c FILE`` that the command line does not give itself.

    Raises:
        BadInput: The file is missing, or does not match the schema (file, line and key named).
    """
    if getattr(args, "config", None) is None:
        return args
    from devicefit.device_profiles._schema import SchemaError
    from devicefit.search import cli
    from devicefit.search._config import apply_config, explicit_options, load_config

    path = Path(args.config)
    if not path.is_file():
        raise BadInput(f"-c {path}: no such file")
    try:
        config = load_config(path)
    except SchemaError as exc:
        raise BadInput(str(exc)) from None
    explicit = explicit_options(cli.build_parser(), args.argv, args.command)
    vars(args).update(vars(apply_config(args, config, path.resolve().parent, explicit)))  # in place: main sees --out
    return args


def task_source(args: argparse.Namespace, default_example: str) -> Any:
    """The model and data the command line names, checked (nothing loaded yet).

    Raises:
        BadInput: Conflicting or missing options, a missing file, a malformed ``--model``.
    """
    from devicefit.search._user_model import ModelSourceError, parse_task_source

    example = args.example if (args.example or args.model) else default_example
    try:
        return parse_task_source(example, args.model, args.data)
    except ModelSourceError as exc:
        raise BadInput(str(exc)) from None


def load_task(source: Any, devices: list[Any], *, seed: int) -> Any:
    """Load the task of ``source`` (a code-less program is searched by precision and sparsity: the fit's
    banner says which dimensions are open and which closed, see ``_user_model.program_dimensions``).

    Raises:
        BadInput: The model or data cannot be used.
    """
    from devicefit.evaluators import DataError
    from devicefit.search._user_model import ModelSourceError
    from devicefit.search._user_model import load_task as load

    del devices  # the devices' precisions shape the space, which the fit builds
    try:
        return load(source, seed=seed)
    except (ModelSourceError, DataError) as exc:
        raise BadInput(str(exc)) from None


def fit_result_document(result: Any, exit_code: int, *, command: str) -> dict[str, Any]:
    """``--json`` output of ``fit`` and ``search``: the written ``pareto.json`` plus the run's outcome."""
    out = Path(result.out)
    pareto = json.loads((out / "pareto.json").read_text(encoding="utf-8"))
    report = out / "report.html"
    return {
        "command": command,
        "exit_code": exit_code,
        "out": str(out.resolve()),
        "report": str(report.resolve()) if report.is_file() and command == "fit" else None,
        "completed": result.completed,
        "failed": result.failed,
        "stopped_by_time": result.stopped_by_time,
        **pareto,
    }


# --------------------------------------------------------------------------------------------------
# report


def report(args: argparse.Namespace) -> int:
    """``devicefit report RUN``: rebuild ``report.html`` from the study alone."""
    from devicefit.search._report import REPORT_FILE, build_report_data, write_report
    from devicefit.search._runs import RunNotFoundError, load_run_study, locate_run

    try:
        location = locate_run(args.run, args.study)
    except RunNotFoundError as exc:
        raise BadInput(str(exc)) from None
    if args.to is not None:
        target = Path(args.to)
    elif location.out is not None:
        target = location.out / REPORT_FILE
    else:
        raise BadInput(f"the output folder of {location.storage_url} is not on this machine: give --to report.html")
    if target.is_dir():
        target = target / REPORT_FILE
    if not os.access(target.parent if target.parent.exists() else Path.cwd(), os.W_OK):
        raise BadInput(f"--to {target}: cannot write there")
    say = _say(args)
    say(f"reading study '{location.study_name}' ({location.storage_url}) ...")
    study = load_run_study(location)
    try:
        data = build_report_data(study, storage=location.storage_url, out=location.out)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    path = write_report(data, target)
    say(f"wrote {path} ({len(data.members)} Pareto members, {data.trial_counts['complete']} evaluated candidates)")
    if args.json:
        print_json({"command": "report", "exit_code": EXIT_OK, "report": str(path.resolve()),
                    "data": str(path.with_suffix(".json").resolve()), "members": [m.key for m in data.members],
                    "devices": list(data.devices), "trials": dict(data.trial_counts)})
    else:
        print(path)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# export


def export(args: argparse.Namespace) -> int:
    """``devicefit export RUN --candidate KEY --to DIR``."""
    from devicefit.search._export import ExportError, export_candidate
    from devicefit.search._runs import RunNotFoundError

    try:
        result = export_candidate(args.run, args.candidate, Path(args.to), devices=args.devices,
                                  study_name=args.study, progress=_say(args))
    except (RunNotFoundError, ExportError) as exc:
        raise BadInput(str(exc)) from None
    if args.json:
        print_json({"command": "export", "exit_code": EXIT_OK, "folder": str(result.folder.resolve()),
                    "key": result.key, "trial": result.trial, "converted": list(result.converted),
                    "files": {f.name: {"sha256": f.sha256, "size_bytes": f.size_bytes, "origin": f.origin}
                              for f in result.files}})
    else:
        for item in result.files:
            print(f"  {item.name:<24} {item.size_bytes:>10,} B  sha256 {item.sha256[:16]}  {item.origin}")
        print(f"{result.folder}/ : {result.key} (trial {result.trial}); manifest.json says what every figure is")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# devices


def devices(args: argparse.Namespace) -> int:
    """``devicefit devices COMMAND``: dispatch on the sub-command."""
    commands = {"list": list_devices, "show": show_device, "calibrate": calibrate, "check-ops": check_ops}
    return commands[args.devices_command](args)


def list_devices(args: argparse.Namespace) -> int:
    """``devicefit devices list``: every profile, whether its predictor is calibrated, and its measured error."""
    from devicefit.device_profiles._cli import list_devices as run

    return _device_command(lambda: run(print, all_versions=args.all_versions))


def show_device(args: argparse.Namespace) -> int:
    """``devicefit devices show ID``: one profile, with its predictor's provenance and coefficients."""
    from devicefit.device_profiles._cli import show_device as run

    return _device_command(lambda: run(args.device, print))


def _device_command(run: Any) -> int:
    """Run a ``device_profiles._cli`` command; input the user can fix becomes :class:`BadInput`."""
    from devicefit.device_profiles import SchemaError
    from devicefit.device_profiles._cli import ProfileCommandError

    try:
        return int(run())
    except (ProfileCommandError, SchemaError) as exc:
        raise BadInput(str(exc)) from None


# --------------------------------------------------------------------------------------------------
# calibrate


def calibrate(args: argparse.Namespace) -> int:
    """``devicefit [devices] calibrate --device ID``: measure generated models on the device, fit, write a new
    version."""
    from devicefit.device_profiles._cli import run_calibrate
    from devicefit.search import cli

    cli.check_storage(args.storage)
    return _device_command(
        lambda: run_calibrate(args.device, out_dir=args.out_dir, quick=args.quick, seed=args.seed, keep=args.keep,
                              storage_url=args.storage, out=lambda line: print(line, flush=True), log=_say(args))
    )


def check_ops(args: argparse.Namespace) -> int:
    """``devicefit devices check-ops MODEL --device ID``: which of the model's ops each device's Paddle Lite runs."""
    from devicefit.device_profiles import SchemaError, UnknownDeviceError, load_profile
    from devicefit.evaluators._lite_client import LiteUnavailableError, LiteWorker

    model = Path(args.model)
    if model.is_dir():
        model = model / "model.pdmodel"
    params = model.with_suffix(".pdiparams")
    if not model.is_file() or model.suffix != ".pdmodel":
        raise BadInput(f"{args.model}: expected a .pdmodel file (or a folder holding model.pdmodel)")
    try:
        profiles = [load_profile(device) for device in args.devices]
    except (UnknownDeviceError, SchemaError) as exc:
        raise BadInput(str(exc).strip("'\"")) from None
    results = []
    with LiteWorker() as lite:
        try:
            lite.hello()
        except LiteUnavailableError as exc:
            raise BadInput(str(exc).splitlines()[0]) from None
        for profile in profiles:
            support = lite.check_model(model, params if params.is_file() else None, profile.places)
            results.append({"device": profile.id, "places": profile.places, "supported": support.supported,
                            "unsupported_ops": list(support.unsupported_ops),
                            "model_ops": {op: list(targets) for op, targets in support.model_ops.items()}})
    if args.json:
        print_json({"command": "devices check-ops", "model": str(model.resolve()), "devices": results})
    else:
        for item in results:
            verdict = "every op has a kernel" if item["supported"] else "unsupported: " + ", ".join(item["unsupported_ops"])
            print(f"{item['device']} ({item['places']}): {verdict}")
            for op, targets in sorted(item["model_ops"].items()):
                print(f"  {op:<28} {', '.join(targets) or 'no kernel'}")
    return EXIT_OK if all(item["supported"] for item in results) else 1


# --------------------------------------------------------------------------------------------------
# dashboard


def dashboard(args: argparse.Namespace) -> int:
    """``devicefit dashboard RUN``: optuna-dashboard on the run's study, if it is installed."""
    from devicefit.search._runs import RunNotFoundError, locate_run

    if importlib.util.find_spec("optuna_dashboard") is None:
        raise BadInput(f"optuna-dashboard is not installed: {DASHBOARD_INSTALL} (in this environment), then rerun")
    try:
        location = locate_run(args.run, args.study)
    except RunNotFoundError as exc:
        raise BadInput(str(exc)) from None
    _say(args)(f"optuna-dashboard on study '{location.study_name}': http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    from optuna_dashboard import run_server  # its documented entry point

    run_server(location.storage_url, host=args.host, port=args.port)
    return EXIT_OK
