"""FAKE ``adb``, for tests: there is no Android phone here, so this stands in for the ``adb`` client and the
phone behind it, and really executes what it is given on this machine.

The phone's filesystem is a sandbox folder (``root`` in the state file): the phone's writable folders
``/data/local/tmp`` and ``/sdcard`` are ``<root>/data/local/tmp`` and ``<root>/sdcard``. ``push`` and ``pull``
copy files there (paths elsewhere fail, as on a phone without root); ``shell`` runs the command with
``/bin/sh -c`` in ``<root>``, after rewriting those two device folders in it to their sandbox paths, and
exits with the command's status (as ``adb shell`` does since Android 7). So whatever devicefit pushes (the
``benchmark_bin``, the ``.nb``, input files) really lands in the sandbox, really runs, and is really removed.

Usage: ``fake_adb.py --state STATE.json <adb arguments>``; a test writes a wrapper script that adds
``--state``. The state file (JSON) says::

    {"root": "/tmp/.../phone", "devices": {"FAKE0001": "device"},
     "unplug_after_commands": 7}        # optional: after 7 commands on a serial, it disappears

Supported: ``devices``, ``version``, ``-s SERIAL push|pull|shell ...``. A serial that is not listed (or was
unplugged) fails like the real client: ``adb: device 'X' not found`` on stderr, exit 1; an ``offline`` one
fails with ``adb: device offline``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

DEVICE_FOLDERS = ("/data/local/tmp", "/sdcard")


def load_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def to_sandbox(root: Path, device_path: str) -> Path:
    for folder in DEVICE_FOLDERS:
        if device_path == folder or device_path.startswith(folder + "/"):
            return root / device_path.lstrip("/")
    raise PermissionError(f"remote path '{device_path}' is outside the fake phone's writable folders {DEVICE_FOLDERS}")


def rewrite_command(root: Path, command: str) -> str:
    for folder in DEVICE_FOLDERS:
        command = re.sub(r"(?<![\w/.])" + re.escape(folder) + r"(?=/|\s|$|'|\")", str(root) + folder, command)
    return command


def fail(message: str, code: int = 1) -> int:
    sys.stderr.write(message + "\n")
    return code


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--state":
        return fail("usage: fake_adb.py --state STATE.json <adb arguments>")
    state_path = Path(argv[1])
    args = argv[2:]
    state = load_state(state_path)
    root = Path(state["root"])
    devices: dict[str, str] = state.setdefault("devices", {})
    if not args:
        return fail("adb: usage: no command specified")
    if args[0] == "version":
        print("Android Debug Bridge version 1.0.41 (FAKE, devicefit tests)")
        return 0
    if args[0] == "devices":
        print("List of devices attached")
        for serial, status in devices.items():
            print(f"{serial}\t{status}")
        print()
        return 0
    if args[0] != "-s" or len(args) < 3:
        return fail(f"adb: FAKE adb supports devices, version and -s SERIAL push|pull|shell, not {args}")
    serial, command, rest = args[1], args[2], args[3:]
    if serial not in devices:
        return fail(f"adb: device '{serial}' not found")
    if devices[serial] != "device":
        return fail(f"adb: device {devices[serial]}")
    counts = state.setdefault("commands", {})
    counts[serial] = counts.get(serial, 0) + 1
    limit = state.get("unplug_after_commands")
    if limit is not None and counts[serial] > int(limit):
        del devices[serial]
        save_state(state_path, state)
        return fail(f"adb: device '{serial}' not found")
    save_state(state_path, state)

    if command == "push":
        if len(rest) != 2:
            return fail("adb: push requires LOCAL and REMOTE")
        local, remote = Path(rest[0]), rest[1]
        try:
            target = to_sandbox(root, remote)
        except PermissionError as exc:
            return fail(f"adb: error: failed to copy '{local}' to '{remote}': {exc}")
        if not local.is_file():
            return fail(f"adb: error: cannot stat '{local}': No such file or directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, target)
        size = target.stat().st_size
        print(f"{local}: 1 file pushed, 0 skipped. ({size} bytes in 0.001s)")
        return 0
    if command == "pull":
        if len(rest) != 2:
            return fail("adb: pull requires REMOTE and LOCAL")
        try:
            source = to_sandbox(root, rest[0])
        except PermissionError as exc:
            return fail(f"adb: error: {exc}")
        if not source.is_file():
            return fail(f"adb: error: failed to stat remote object '{rest[0]}': No such file or directory")
        shutil.copy2(source, rest[1])
        print(f"{rest[0]}: 1 file pulled, 0 skipped.")
        return 0
    if command == "shell":
        if not rest:
            return fail("adb: FAKE adb has no interactive shell")
        line = rewrite_command(root, " ".join(rest))
        root.mkdir(parents=True, exist_ok=True)
        completed = subprocess.run(["/bin/sh", "-c", line], cwd=root, check=False)
        return completed.returncode
    return fail(f"adb: FAKE adb does not know '{command}'")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
