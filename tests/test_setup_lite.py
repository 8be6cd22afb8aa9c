"""The Paddle Lite interpreter that `make setup` provisions (.lite/bin/python) really runs paddlelite.

Paddle Lite has no wheel for the main CPython 3.11, so devicefit runs it in a separate CPython 3.9/3.10
process through one wrapper; these tests run that wrapper the way devicefit does: as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LITE_PYTHON = ROOT / ".lite" / "bin" / "python"
LITE_INFO = ROOT / ".lite" / "info.json"
PADDLELITE_VERSION = "2.13rc0"
NUMPY_VERSION = "1.26.4"

PROBE = """
import importlib.metadata as md, json, sys
import numpy
import paddlelite.lite as lite
print(json.dumps({
    "implementation": sys.implementation.name,
    "version": list(sys.version_info[:2]),
    "executable": sys.executable,
    "paddlelite": md.version("paddlelite"),
    "paddlelite_file": lite.__file__,
    "numpy": numpy.__version__,
    "numpy_file": numpy.__file__,
    "has_opt": hasattr(lite, "Opt"),
    "has_mobile_config": hasattr(lite, "MobileConfig"),
}))
"""


def run_lite(code: str, env: dict[str, str] | None = None) -> dict:
    assert LITE_PYTHON.is_file(), f"{LITE_PYTHON} is missing: run `make setup`"
    proc = subprocess.run([str(LITE_PYTHON), "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f".lite/bin/python failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_lite_interpreter_imports_paddlelite():
    # A caller's environment (this 3.11 process's paths, a stray PYTHONHOME) must not leak into the Lite process.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), PYTHONHOME=sys.prefix)
    info = run_lite(PROBE, env=env)
    assert info["implementation"] == "cpython"
    assert tuple(info["version"]) in {(3, 9), (3, 10)}, info["version"]
    assert info["paddlelite"] == PADDLELITE_VERSION
    assert info["numpy"] == NUMPY_VERSION
    assert info["has_opt"] and info["has_mobile_config"]
    site = ROOT / ".lite" / "site"
    assert Path(info["paddlelite_file"]).resolve().is_relative_to(site.resolve())
    assert Path(info["numpy_file"]).resolve().is_relative_to(site.resolve())


def test_lite_info_json_describes_the_interpreter():
    info = json.loads(LITE_INFO.read_text())
    assert info["route"] in {"env", "existing", "debian"}
    assert info["paddlelite"] == PADDLELITE_VERSION
    assert Path(info["interpreter"]).exists()
    assert info["version"].split(".")[:2] in (["3", "9"], ["3", "10"])
    probe = run_lite("import json, platform; print(json.dumps({'version': platform.python_version()}))")
    assert probe["version"] == info["version"]
