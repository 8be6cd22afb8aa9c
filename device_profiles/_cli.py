"""What ``devicefit devices list|show`` and ``devicefit calibrate`` do (the parsers live in search/cli.py).

Compute, then render: :func:`device_rows` and :func:`device_details` build plain data that tests check;
:func:`format_table` only lays it out.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from devicefit.device_profiles._predictor import PredictorParams
from devicefit.device_profiles._profile import DeviceProfile, ProfileFile, find_profiles, user_profiles_dir

if TYPE_CHECKING:
    from devicefit.device_profiles._calibrate import CalibrationPlan
    from devicefit.evaluators._lite_client import LiteWorker
    from devicefit.evaluators._runner import DeviceRunner

Print = Callable[[str], None]

#: Columns of ``devices list``.
LIST_COLUMNS = ("id", "unit", "places", "threads", "reach", "version", "predictor", "measured error", "file")


class ProfileCommandError(ValueError):
    """Input the user can fix (unknown device, a device nothing here can reach); one line, exit code 2."""


def _reach(profile: DeviceProfile) -> str:
    reach = profile.reach
    if reach.kind == "adb":
        return f"adb {reach.serial or '(default device)'}"
    if reach.kind == "ssh":
        return f"ssh {reach.host or '?'}"
    return reach.kind


def _predictor_state(profile: DeviceProfile) -> str:
    if profile.predictor is None:
        return "none (measure only)"
    return "calibrated" if profile.predictor.provenance.calibrated else "UNCALIBRATED (seeded from public figures)"


def _error(profile: DeviceProfile) -> str:
    if profile.predictor is None or profile.predictor.provenance.error is None:
        return "not measured"
    error = profile.predictor.provenance.error
    if "cross-validation" in error.what:
        where = "cross-validated"
    elif "held-out" in error.what:
        where = "held-out"
    else:
        where = error.what if len(error.what) <= 30 else error.what[:29] + "..."
    return f"MAPE {error.mape_percent:.1f}%, {100 * error.within10:.0f}% within +-10% ({where}, {error.models} models)"


def device_rows(entries: Sequence[ProfileFile]) -> list[dict[str, str]]:
    """One row per profile for ``devices list`` (keys: :data:`LIST_COLUMNS`)."""
    rows = []
    for entry in entries:
        p = entry.profile
        rows.append({
            "id": p.id,
            "unit": p.unit,
            "places": p.places,
            "threads": str(p.threads),
            "reach": _reach(p),
            "version": f"v{p.version}",
            "predictor": _predictor_state(p),
            "measured error": _error(p),
            "file": "shipped" if entry.shipped else str(entry.path),
        })
    return rows


def format_table(rows: Sequence[dict[str, str]], columns: Sequence[str]) -> list[str]:
    """Left-aligned columns, a header line first."""
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return lines


def list_devices(out: Print, *, all_versions: bool = False) -> int:
    """``devicefit devices list``: every profile, whether its predictor is calibrated, and its measured error."""
    entries = find_profiles(all_versions=all_versions)
    for line in format_table(device_rows(entries), LIST_COLUMNS):
        out(line)
    uncalibrated = [e.profile.id for e in entries if e.profile.predictor is not None and not e.profile.calibrated]
    if uncalibrated:
        out("")
        out(f"{len(uncalibrated)} profiles are seeded from public figures, not calibrated on the device: their "
            "predicted latencies are rough estimates and are labelled 'predicted (uncalibrated)' everywhere.")
    out(f"user profiles (written by `devicefit calibrate`): {user_profiles_dir()}")
    return 0


def device_details(entry: ProfileFile) -> list[str]:
    """Lines of ``devicefit devices show <id>``."""
    p = entry.profile
    lines = [
        f"{p.id} v{p.version}: {p.name}",
        f"  file        {'shipped: ' if entry.shipped else ''}{entry.path}",
        f"  soc         {p.soc}",
        f"  unit        {p.unit}; Paddle Lite places '{p.places}'; {p.threads} thread(s); power mode {p.power_mode}",
        f"  precisions  {', '.join(p.precisions)}",
        f"  memory      {'no limit given' if p.memory_limit_bytes is None else f'{p.memory_limit_bytes / 2**20:.0f} MiB'}",
        f"  reach       {_reach(p)}",
        f"  notes       {p.notes}",
        f"  predictor   {_predictor_state(p)}",
    ]
    if p.predictor is not None:
        prov = p.predictor.provenance
        lines += [
            f"    method       {prov.method}",
            f"    measured on  {prov.measured_on}",
            f"    date         {prov.date}",
            f"    tool         {prov.tool}",
            f"    error        {prov.error.describe() if prov.error else 'not measured'}",
        ]
        lines += [f"    source       {source}" for source in prov.sources]
        if prov.notes:
            lines.append(f"    notes        {prov.notes}")
        lines.append("    coefficients (microseconds per unit of each feature):")
        lines += [f"      {line}" for line in predictor_summary(p.predictor)]
    return lines


def show_device(device: str, out: Print) -> int:
    """``devicefit devices show <id>``.

    Raises:
        ProfileCommandError: No profile has that id.
    """
    matches = [e for e in find_profiles() if e.profile.id == device]
    if not matches:
        known = ", ".join(e.profile.id for e in find_profiles())
        raise ProfileCommandError(f"unknown device '{device}' (known: {known})")
    for line in device_details(matches[0]):
        out(line)
    return 0


def run_calibrate(
    device: str,
    *,
    out_dir: Path | None,
    quick: bool,
    seed: int,
    keep: Path | None,
    out: Print,
    log: Print | None = None,
    storage_url: str | None = None,
    plan: CalibrationPlan | None = None,
) -> int:
    """``devicefit calibrate --device <id>``: measure, fit, write a new profile version (never over another).

    The runner comes from the device's reach (:func:`runner_for`): this host, a phone over adb, a board over
    ssh; it is checked before any model is built.

    Args:
        device: A profile id or a profile ``.yaml`` path.
        out_dir: Folder of the new version (default: the user's profile folder, where loading by id finds it).
        quick: The small sweep of :meth:`CalibrationPlan.quick`.
        seed: Seed of the generated models.
        keep: Keep the generated models there (default: a temporary folder, deleted at the end).
        out: Receives the result lines (what was written, the predictor's error).
        log: Receives progress lines (default: ``out``).
        storage_url: A search's storage: each visit to the device holds the device's lease there.
        plan: The sweep; overrides ``quick`` and ``seed`` (for tests and benches).

    Raises:
        ProfileCommandError: Unknown or invalid profile, or a device nothing here can reach.
        CalibrationError: Too many models failed, the device failed during the sweep, or the fit failed.
    """
    from devicefit.device_profiles._calibrate import CalibrationPlan, calibrate, write_calibration
    from devicefit.device_profiles._profile import UnknownDeviceError, load_profile, next_version
    from devicefit.device_profiles._schema import SchemaError
    from devicefit.evaluators._errors import DeviceUnavailableError
    from devicefit.evaluators._lite_client import LiteUnavailableError, LiteWorker

    progress = log or out
    try:
        profile = load_profile(device)
    except (UnknownDeviceError, SchemaError) as exc:
        raise ProfileCommandError(str(exc).strip("'\"")) from None
    target = Path(out_dir) if out_dir is not None else user_profiles_dir()
    version = max(next_version(profile.id, target), profile.version + 1)
    if plan is None:
        plan = CalibrationPlan.quick(seed) if quick else dataclasses.replace(CalibrationPlan(), seed=seed)
    leases = None
    if storage_url is not None:
        from devicefit.evaluators._lease import DeviceLeases

        leases = DeviceLeases(storage_url)
    work = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix=f"devicefit-calibrate-{profile.id}-"))
    try:
        with LiteWorker() as worker:  # started by its first request
            runner = runner_for(profile, worker)
            try:
                worker.hello()
            except LiteUnavailableError as exc:
                raise ProfileCommandError(str(exc).splitlines()[0]) from None
            try:
                calibration = calibrate(profile, runner=runner, worker=worker, work_dir=work, plan=plan,
                                        version=version, leases=leases, log=progress)
            except DeviceUnavailableError as exc:
                raise ProfileCommandError(f"--device {device}: {exc}") from None
        path, data_path = write_calibration(calibration, target)
    finally:
        if leases is not None:
            leases.close()
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    for failure in calibration.failures:
        progress(f"  skipped {failure}")
    out(f"wrote {path}")
    out(f"      {data_path} (every measurement, with the fitted value)")
    out(calibration.profile.describe_predictor())
    if quick:
        out("this was a --quick sweep: fine for a first look, not for decisions (run without --quick)")
    return 0


def runner_for(profile: DeviceProfile, worker: LiteWorker) -> DeviceRunner:
    """The runner that reaches ``profile``'s device, as a measured latency would reach it.

    ``local``: this host through the Lite worker; ``adb``: the phone through ``adb`` (``$DEVICEFIT_ADB`` or
    ``adb`` on ``PATH``) and the profile's ``benchmark_bin``; ``ssh``: the board through ``ssh``/``scp``
    (``$DEVICEFIT_SSH``/``$DEVICEFIT_SCP``) and its Python with ``paddlelite``.

    Raises:
        ProfileCommandError: The device is reached by ``none``: nothing here can time models on it.
    """
    from devicefit.evaluators._adb import AdbRunner
    from devicefit.evaluators._host import HostRunner
    from devicefit.evaluators._ssh import SshRunner

    kind = profile.reach.kind
    if kind == "local":
        return HostRunner(worker)
    if kind == "adb":
        return AdbRunner()
    if kind == "ssh":
        return SshRunner()
    raise ProfileCommandError(
        f"{profile.id} is reached by '{kind}': nothing here can time models on it; calibrate a copy of its "
        "profile whose reach says how to get to the device (adb serial and benchmark_bin, or ssh host)"
    )


def predictor_summary(params: PredictorParams) -> list[str]:
    """Lines describing a predictor's coefficients (for ``devices show``)."""
    lines = [f"overhead {params.overhead_us:.2f} us per inference"]
    for key, cost in sorted(params.kernels.items()):
        coefficients = ", ".join(
            f"{name} {value:.4g}" for name, value in dataclasses.asdict(cost).items()
            if name.endswith("_us") and value
        )
        factors = f", {len(cost.shape_factors)} shape factors" if cost.shape_factors else ""
        seen = f"measured in {cost.models} models" if cost.models else "not measured on this device"
        lines.append(f"{key}: {coefficients or 'free'} ({seen}{factors})")
    if params.subgraph is not None:
        lines.append(f"NNAdapter subgraph: {params.subgraph.call_us:.1f} us per run + {params.subgraph.kib_us:.3f} us/KiB")
    return lines
