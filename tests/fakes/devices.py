"""Fake devices for tests: a phone behind the fake ``adb`` and a board behind the fake ``ssh``/``scp``.

They stand in only for what cannot exist here; everything devicefit sends them really runs on this machine
(see ``fake_adb.py``, ``fake_ssh.py``, ``fake_benchmark_bin.py`` in this folder). The builders write the
wrapper scripts that a runner (or ``DEVICEFIT_ADB``/``DEVICEFIT_SSH``/``DEVICEFIT_SCP``) points at.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from devicefit.device_profiles import DeviceProfile, Reach
from devicefit.evaluators._lite_client import find_lite_python

FAKES = Path(__file__).resolve().parent


def lite_python() -> str:
    """The Paddle Lite interpreter (the fake board's Python, and the fake benchmark_bin's)."""
    return find_lite_python()[0]


def write_script(path: Path, lines: list[str]) -> Path:
    """An executable ``#!/bin/sh`` script with ``lines``."""
    path.write_text("#!/bin/sh\n" + "\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


@dataclasses.dataclass
class FakePhone:
    """A fake phone: the ``adb`` wrapper, its state file and sandbox, and a ``benchmark_bin`` to push."""

    adb: Path
    state_file: Path
    root: Path
    benchmark_bin: Path
    serial: str = "FAKE0001"

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def set_state(self, **changes: object) -> None:
        self.state_file.write_text(json.dumps({**self.state(), **changes}))

    def profile(self, *, places: str = "x86", benchmark_bin: Path | None = None, **fields: object) -> DeviceProfile:
        reach = Reach(kind="adb", serial=self.serial, benchmark_bin=str(benchmark_bin or self.benchmark_bin))
        defaults: dict[str, object] = {"unit": "cpu"}
        return DeviceProfile(
            id="fake-phone", name="FAKE phone", soc="x86 host posing as a phone", places=places, reach=reach,
            **{**defaults, **fields},  # type: ignore[arg-type]
        )

    def files_left(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def write_profile(self, path: Path, *, places: str = "x86") -> Path:
        """This phone's device profile as a user would write it."""
        path.write_text(
            "id: fake-phone\nname: FAKE phone\nsoc: x86 host posing as a phone\nunit: cpu\n"
            f"places: {places}\nthreads: 1\npower_mode: high\n"
            f"reach:\n  kind: adb\n  serial: {self.serial}\n  benchmark_bin: {self.benchmark_bin}\n"
        )
        return path


def make_fake_phone(tmp_path: Path) -> FakePhone:
    """A fake phone listed by the fake adb as FAKE0001, whose benchmark_bin is the fake one."""
    root = tmp_path / "phone"
    (root / "data" / "local" / "tmp").mkdir(parents=True)
    state = tmp_path / "adb-state.json"
    state.write_text(json.dumps({"root": str(root), "devices": {"FAKE0001": "device"}}))
    adb = write_script(tmp_path / "adb", [f'exec "{sys.executable}" "{FAKES / "fake_adb.py"}" --state "{state}" "$@"'])
    benchmark_bin = write_script(
        tmp_path / "benchmark_bin", [f'exec "{lite_python()}" "{FAKES / "fake_benchmark_bin.py"}" "$@"']
    )
    return FakePhone(adb, state, root, benchmark_bin)


@dataclasses.dataclass
class FakeBoard:
    """A fake board: ``ssh``/``scp`` wrappers, their state file and the sandbox home folder."""

    ssh: Path
    scp: Path
    state_file: Path
    home: Path
    host: str = "board-1"

    def set_state(self, **changes: object) -> None:
        state = json.loads(self.state_file.read_text())
        self.state_file.write_text(json.dumps({**state, **changes}))

    def profile(self, *, python: str | None = None, **fields: object) -> DeviceProfile:
        reach = Reach(kind="ssh", host=self.host, python=python or lite_python())
        return DeviceProfile(
            id="fake-board", name="FAKE board", soc="x86 host posing as a board", unit="cpu", places="x86",
            reach=reach, **fields,  # type: ignore[arg-type]
        )

    def files_left(self) -> list[Path]:
        return sorted(p for p in self.home.rglob("*") if p.is_file())

    def write_profile(self, path: Path) -> Path:
        """This board's device profile as a user would write it."""
        path.write_text(
            "id: fake-board\nname: FAKE board\nsoc: x86 host posing as a board\nunit: cpu\nplaces: x86\n"
            f"reach:\n  kind: ssh\n  host: {self.host}\n  python: {lite_python()}\n"
        )
        return path


def make_fake_board(tmp_path: Path) -> FakeBoard:
    """A fake board 'board-1' whose login home is a sandbox folder and whose Python is the Lite interpreter."""
    home = tmp_path / "board"
    home.mkdir()
    state = tmp_path / "ssh-state.json"
    state.write_text(json.dumps({"home": str(home), "hosts": ["board-1"]}))
    fake = FAKES / "fake_ssh.py"
    ssh = write_script(tmp_path / "ssh", [f'exec "{sys.executable}" "{fake}" --state "{state}" ssh "$@"'])
    scp = write_script(tmp_path / "scp", [f'exec "{sys.executable}" "{fake}" --state "{state}" scp "$@"'])
    return FakeBoard(ssh, scp, state, home)
