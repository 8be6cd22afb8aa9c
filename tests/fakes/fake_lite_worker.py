"""A stand-in Lite worker for the client's failure tests: the real protocol code, with test-only ops.

It loads ``evaluators/lite_worker.py`` by path (that module needs only the standard library at import)
and serves its protocol with ops that misbehave on request, so that the client's handling of hangs,
stray prints and a corrupted channel is tested without shipping such ops in the real worker. Any
CPython >= 3.9 runs it; it never imports Paddle Lite.

Ops: ``hello``; ``sleep`` (``seconds``); ``noise`` (prints garbage on fd 1 through Python, ``os.write``
and C's ``printf``, and a line on stderr); ``corrupt`` (writes a non-JSON line on the protocol channel);
``abort`` (``os.abort()``, as Paddle Lite does on a fatal error).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parents[2] / "evaluators" / "lite_worker.py"


def _load_worker() -> Any:
    spec = importlib.util.spec_from_file_location("lite_worker_under_test", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    worker = _load_worker()
    channel = worker.claim_protocol_channel()

    def hello(req: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "protocol": worker.PROTOCOL_VERSION,
            "python_version": platform.python_version(),
            "executable": sys.executable,
            "paddlelite_version": None,
            "opt_version": "fake",
        }

    def sleep(req: dict[str, Any]) -> dict[str, Any]:
        time.sleep(float(req.get("seconds", 3600)))
        return {"slept": True}

    def noise(req: dict[str, Any]) -> dict[str, Any]:
        print('{"id": 999999, "ok": true, "from": "python print"}')
        os.write(1, b'{"id": 999999, "ok": true, "from": "os.write"}\nnot json at all\n')
        libc = ctypes.CDLL(None)
        libc.printf(b"native printf garbage {\n")  # left in C's stdout buffer until a flush
        sys.stderr.write("noise on stderr\n")
        return {"noisy": True}

    def corrupt(req: dict[str, Any]) -> dict[str, Any]:
        channel._file.write(b"this is not a response\n")
        channel._file.flush()
        return {"corrupted": True}

    def abort(req: dict[str, Any]) -> dict[str, Any]:
        sys.stderr.write("[F 01/01  0:00:00.000 fake.cc:1 Abort] fake fatal error\n")
        sys.stderr.flush()
        os.abort()

    return worker.serve({"hello": hello, "sleep": sleep, "noise": noise, "corrupt": corrupt, "abort": abort}, channel)


if __name__ == "__main__":
    sys.exit(main())
