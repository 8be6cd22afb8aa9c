"""The ``devicefit`` command line.

Only the standard library is imported at module level: ``devicefit --help`` must answer at once, and
Paddle (seconds to import) is loaded only by the commands that build models.

Exit codes:
    0  success
    1  the run failed (the message says why; the traceback is in ``<out>/error.log``)
    2  bad input (unknown device or example, unwritable output folder, invalid number...)
    130  interrupted (Ctrl-C); the study is saved, rerunning the same command resumes it
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from devicefit.device_profiles import DeviceProfile

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_DEVICE = "host-x86"
DEFAULT_EXAMPLE = "digits-vit"


class BadInput(Exception):
    """Input the user can fix; reported in one line with exit code 2."""


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="devicefit",
        description="Search for the Pareto-optimal compressed versions of a Paddle Transformer for a device.",
        epilog="Exit codes: 0 ok, 1 run failed, 2 bad input, 130 interrupted (rerun the command to resume).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    fit = commands.add_parser(
        "fit",
        help="search, then export the Pareto-optimal models",
        description="Search width/depth of a Transformer for the given devices, then write pareto.csv, "
        "pareto.json and models/<key>/ (model.pdmodel, model.pdiparams, <device>.nb) to --out. "
        "Rerunning the same command resumes the study.",
    )
    fit.add_argument("--example", default=DEFAULT_EXAMPLE, metavar="NAME",
                     help=f"a shipped example task (default: {DEFAULT_EXAMPLE})")
    fit.add_argument("--device", action="append", metavar="ID", dest="devices",
                     help=f"target device profile id or .yaml path; repeat for several (default: {DEFAULT_DEVICE})")
    fit.add_argument("--trials", type=_positive_int, default=12, metavar="N",
                     help="finished trials the study should have (default: 12)")
    fit.add_argument("--out", type=Path, default=Path("runs/fit"), metavar="DIR",
                     help="output folder; an existing run there is resumed (default: runs/fit)")
    fit.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the sampler and fine-tunes (default: 0)")
    fit.add_argument("--epochs", type=_non_negative_int, default=3, metavar="N",
                     help="distillation epochs per candidate during the search (default: 3)")
    fit.add_argument("--quiet", action="store_true", help="no progress lines")
    fit.add_argument("--predict", action="append", metavar="ID", default=[],
                     help="predict this target's latency with its profile's predictor instead of measuring it "
                     "(devices reached by 'none' are always predicted); repeat for several")
    _add_devices_parser(commands)
    _add_calibrate_parser(commands)
    return parser


def _add_devices_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``devicefit devices list|show``: the device profiles and their predictors."""
    devices = commands.add_parser(
        "devices",
        help="list the device profiles, whether each predictor is calibrated, and its measured error",
        description="Device profiles: shipped ones and the versions `devicefit calibrate` wrote.",
    )
    actions = devices.add_subparsers(dest="devices_command", metavar="ACTION", parser_class=_Parser)
    listing = actions.add_parser("list", help="one line per device (highest version)")
    listing.add_argument("--all-versions", action="store_true", help="every version of every device")
    show = actions.add_parser("show", help="everything about one device: reach, precisions, predictor provenance")
    show.add_argument("device", metavar="ID", help="a device profile id")


def _add_calibrate_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``devicefit calibrate --device ID``: fit a device's latency predictor on measurements."""
    calibrate = commands.add_parser(
        "calibrate",
        help="measure generated models on a device and write a new, calibrated profile version",
        description="Time single-kernel probes and whole encoder models on the device, fit its latency "
        "predictor, and write <id>.v<N>.yaml (never over an existing file) with the measurements.",
    )
    calibrate.add_argument("--device", required=True, metavar="ID", help="device profile id or .yaml path")
    calibrate.add_argument("--out", type=Path, metavar="DIR",
                           help="folder for the new profile version (default: $DEVICEFIT_PROFILES_DIR or "
                           "~/.devicefit/profiles, where devicefit finds it by id)")
    calibrate.add_argument("--quick", action="store_true", help="a small sweep (about 40 models): a first look only")
    calibrate.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the generated models (default: 0)")
    calibrate.add_argument("--keep", type=Path, metavar="DIR", help="keep the generated models in DIR (default: deleted)")


def _devices(args: argparse.Namespace) -> int:
    from devicefit.device_profiles._cli import DeviceCommandError, list_devices, show_device

    try:
        if args.devices_command == "show":
            return show_device(args.device, print)
        return list_devices(print, all_versions=getattr(args, "all_versions", False))
    except DeviceCommandError as exc:
        raise BadInput(str(exc)) from None


def _calibrate(args: argparse.Namespace) -> int:
    from devicefit.device_profiles._cli import DeviceCommandError, run_calibrate

    try:
        return run_calibrate(args.device, out_dir=args.out, quick=args.quick, seed=args.seed, keep=args.keep,
                             out=lambda line: print(line, flush=True))
    except DeviceCommandError as exc:
        raise BadInput(str(exc)) from None


def check_output_folder(out: Path) -> None:
    """Fail early, writing nothing, unless ``out`` can hold a run.

    Raises:
        BadInput: ``out`` is a file, a folder with other content, or cannot be created or written.
    """
    if out.exists():
        if not out.is_dir():
            raise BadInput(f"--out {out} exists and is not a folder")
        entries = {p.name for p in out.iterdir()}
        if entries and "study.db" not in entries:
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


def _fit(args: argparse.Namespace) -> int:
    from devicefit.device_profiles import SchemaError, UnknownDeviceError
    from devicefit.examples import UnknownExampleError, example_info

    try:
        example_info(args.example)
        devices = _fit_devices(args.devices or [DEFAULT_DEVICE], args.predict)
        check_output_folder(args.out)
    except (UnknownDeviceError, UnknownExampleError, SchemaError) as exc:
        raise BadInput(str(exc).strip("'\"")) from None

    from devicefit.evaluators._accuracy import DistillationSettings
    from devicefit.examples import load_example
    from devicefit.search._fit import Fit, FitSettings
    from devicefit.search._progress import Progress

    settings = FitSettings(
        out=args.out,
        devices=tuple(devices),
        trials=args.trials,
        seed=args.seed,
        distillation=DistillationSettings(epochs=args.epochs, seed=args.seed),
        predict=tuple(p.id for p in devices if p.id in args.predict or p.reach.kind == "none"),
    )
    progress = Progress(args.trials, quiet=args.quiet)
    progress.info(f"loading example '{args.example}' ...")
    task = load_example(args.example, seed=args.seed)
    with Fit(task, settings, progress=progress) as fit:
        try:
            result = fit.run()
        except KeyboardInterrupt:
            progress.error(f"interrupted: the study is saved in {args.out / 'study.db'}; rerun the same command to resume")
            return EXIT_INTERRUPTED
    print_front(result)
    if result.completed == 0:
        progress.error(f"devicefit: error: no candidate could be evaluated; each trial's reason is in {args.out / 'study.db'}")
        return EXIT_FAILED
    return EXIT_OK


def _fit_devices(device_ids: Sequence[str], predict: Sequence[str]) -> list[DeviceProfile]:
    """Load the target profiles; each must be measurable here or predictable.

    A device reached by ``none`` is predicted; one reached by ``local`` is measured unless listed in
    ``predict``; one reached by adb or ssh must be predicted (this version has no runner for them).

    Raises:
        BadInput: A device cannot be measured here nor predicted, or ``predict`` names a non-target.
    """
    from devicefit.device_profiles import load_profile

    devices = []
    for device_id in device_ids:
        profile = load_profile(device_id)
        predicted = profile.reach.kind == "none" or device_id in predict or profile.id in predict
        if predicted and profile.predictor is None:
            raise BadInput(f"--device {device_id}: its profile has no latency predictor, so it cannot be predicted")
        if not predicted and profile.reach.kind != "local":
            raise BadInput(
                f"--device {device_id}: it is reached by '{profile.reach.kind}' and this version of devicefit "
                f"measures only on this host; add --predict {profile.id} to use its profile's predictor"
            )
        devices.append(profile)
    unknown = set(predict) - {d.id for d in devices} - set(device_ids)
    if unknown:
        raise BadInput(f"--predict {sorted(unknown)[0]}: not one of the --device targets")
    return devices


def print_front(result: object) -> None:
    """The Pareto front as a table on standard output."""
    from devicefit.search._fit import FitResult
    from devicefit.search._progress import format_bytes

    assert isinstance(result, FitResult)
    print(f"\n{len(result.pareto)} Pareto-optimal of {result.completed} completed trials "
          f"({result.failed} failed); written to {result.out}/")
    for member in result.pareto:
        record = member.record
        latencies = "  ".join(
            f"{device} {r.latency_ms:.3f} ms {r.source_label}" for device, r in record.latencies.items()
        )
        test = "" if member.test_accuracy is None else f"  test {member.test_accuracy:.4f}"
        print(f"  {record.key:<34} val {record.accuracy.accuracy:.4f} ({record.accuracy.fidelity}){test}  "
              f"{latencies}  {format_bytes(record.size_bytes)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``devicefit`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    handlers = {"fit": _fit, "devices": _devices, "calibrate": _calibrate}
    try:
        return handlers[args.command](args)
    except BadInput as exc:
        print(f"devicefit: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("devicefit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001  (never a traceback on the terminal; it goes to error.log)
        return _report_failure(exc, getattr(args, "out", None))


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
