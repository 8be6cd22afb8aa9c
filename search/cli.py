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
import dataclasses
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

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
    fit.add_argument("--epochs", type=_non_negative_int, default=None, metavar="N",
                     help="distillation epochs per candidate during the search (default: the default accuracy rung's)")
    fit.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


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
    from devicefit.device_profiles import SchemaError, UnknownDeviceError, load_profile
    from devicefit.examples import UnknownExampleError, example_info

    try:
        example_info(args.example)
        devices = []
        for device_id in args.devices or [DEFAULT_DEVICE]:
            profile = load_profile(device_id)
            if profile.reach.kind != "local":
                raise BadInput(
                    f"--device {device_id}: it is reached by '{profile.reach.kind}'; this version of devicefit "
                    "measures only on this host (devices with reach 'local')"
                )
            devices.append(profile)
        check_output_folder(args.out)
    except (UnknownDeviceError, UnknownExampleError, SchemaError) as exc:
        raise BadInput(str(exc).strip("'\"")) from None

    from devicefit.evaluators._accuracy import DEFAULT_DISTILLATION
    from devicefit.evaluators._data import DataError
    from devicefit.examples import load_example
    from devicefit.search._fit import Fit, FitSettings
    from devicefit.search._progress import Progress

    settings = FitSettings(
        out=args.out,
        devices=tuple(devices),
        trials=args.trials,
        seed=args.seed,
        distillation=dataclasses.replace(
            DEFAULT_DISTILLATION, epochs=DEFAULT_DISTILLATION.epochs if args.epochs is None else args.epochs, seed=args.seed
        ),
    )
    progress = Progress(args.trials, quiet=args.quiet)
    progress.info(f"loading example '{args.example}' ...")
    task = load_example(args.example, seed=args.seed)
    try:
        fit = Fit(task, settings, progress=progress)
    except DataError as exc:  # the data does not fit the model: the user's to fix, before any training
        raise BadInput(str(exc)) from None
    with fit:
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
            f"{device} {r.latency_ms:.3f} ms {r.source}" for device, r in record.latencies.items()
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
    handlers = {"fit": _fit}
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
