"""FAKE ``ssh`` and ``scp``, for tests: there is no ARM board here, so these stand in for the OpenSSH client
and the board behind it, and really execute what they are given on this machine.

The board is this machine with a sandbox folder as the login's home (``home`` in the state file):
``ssh HOST COMMAND`` runs ``/bin/sh -c COMMAND`` in that folder with ``HOME`` set to it (a remote command
starts in the home folder, as with sshd), passing stdin, stdout and stderr through, so devicefit's Lite
worker really runs "on the board" and speaks its protocol over this process's pipes. ``scp FILES HOST:DIR/``
copies into the home folder (relative ``DIR``) or to the absolute path given.

Usage: ``fake_ssh.py --state STATE.json ssh|scp <arguments>``; a test writes ``ssh`` and ``scp`` wrapper
scripts that add the first three arguments. The state file (JSON) says::

    {"home": "/tmp/.../board", "hosts": ["board-1"],
     "drop_after_requests": 5}     # optional: the connection drops after the 5th line sent to a remote command

An unknown host fails as a real client does when nobody answers (``ssh: connect to host X port 22: No route
to host``, ssh exit 255; scp adds ``lost connection``, exit 1). With ``drop_after_requests`` the fake relays
stdin line by line and, after that many lines, kills the remote command and exits 255 as a dropped
connection does (``Connection to X closed by remote host.``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

#: ssh options that take a value.
_VALUED = {"-o", "-p", "-i", "-l", "-F", "-J", "-P", "-S", "-c", "-b", "-E", "-L", "-R", "-D", "-W", "-m"}


def parse(args: list[str]) -> tuple[list[str], list[str]]:
    """Split ``[options...] rest...`` into (options, rest) the way ssh/scp read them."""
    options: list[str] = []
    index = 0
    while index < len(args) and args[index].startswith("-"):
        options.append(args[index])
        if args[index] in _VALUED and index + 1 < len(args):
            options.append(args[index + 1])
            index += 1
        index += 1
    return options, args[index:]


def unreachable(host: str) -> str:
    return f"ssh: connect to host {host} port 22: No route to host"


def ssh(state: dict[str, Any], args: list[str]) -> int:
    _, rest = parse(args)
    if not rest:
        sys.stderr.write("usage: ssh [options] destination [command]\n")
        return 255
    host, command = rest[0], " ".join(rest[1:])
    if host.split("@")[-1] not in state["hosts"]:
        sys.stderr.write(unreachable(host) + "\n")
        return 255
    home = Path(state["home"])
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    limit = state.get("drop_after_requests")
    if limit is None:
        return subprocess.run(["/bin/sh", "-c", command or "true"], cwd=home, env=env, check=False).returncode
    child = subprocess.Popen(
        ["/bin/sh", "-c", command], cwd=home, env=env, stdin=subprocess.PIPE, start_new_session=True
    )
    assert child.stdin is not None
    dropped = threading.Event()

    def relay() -> None:
        sent = 0
        for line in sys.stdin.buffer:
            if sent >= int(limit):
                dropped.set()
                os.killpg(child.pid, signal.SIGKILL)
                return
            child.stdin.write(line)
            child.stdin.flush()
            sent += 1
        child.stdin.close()

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    code = child.wait()
    if dropped.is_set():
        sys.stderr.write(f"Connection to {host} closed by remote host.\n")
        return 255
    return code


def scp(state: dict[str, Any], args: list[str]) -> int:
    _, rest = parse(args)
    if len(rest) < 2 or ":" not in rest[-1]:
        sys.stderr.write("FAKE scp supports only: scp [options] FILE... HOST:DIR/\n")
        return 1
    host, _, target = rest[-1].partition(":")
    if host.split("@")[-1] not in state["hosts"]:
        sys.stderr.write(unreachable(host) + "\r\nlost connection\n")
        return 1
    home = Path(state["home"])
    destination = Path(target) if os.path.isabs(target) else home / target
    for source in rest[:-1]:
        path = Path(source)
        if not path.is_file():
            sys.stderr.write(f"scp: {source}: No such file or directory\n")
            return 1
        if target.endswith("/") or destination.is_dir():
            if not destination.is_dir():
                sys.stderr.write(f"scp: {target}: No such file or directory\n")
                return 1
            shutil.copy2(path, destination / path.name)
        else:
            shutil.copy2(path, destination)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "--state" or argv[2] not in ("ssh", "scp"):
        sys.stderr.write("usage: fake_ssh.py --state STATE.json ssh|scp <arguments>\n")
        return 2
    state = json.loads(Path(argv[1]).read_text())
    return ssh(state, argv[3:]) if argv[2] == "ssh" else scp(state, argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
