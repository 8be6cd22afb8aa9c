"""Put pip into a virtual environment that was created without it (stdlib only).

scripts/setup.sh needs this where the base CPython 3.11 has no ensurepip, e.g. Debian's python3.11 when the
python3.11-venv package is not installed: `python3.11 -m venv` then fails, so setup.sh creates the venv with
`--without-pip` and runs this file with the venv's own python:

    .venv/bin/python scripts/bootstrap_pip.py

It downloads one pinned pip wheel from the package index (PIP_INDEX_URL, default PyPI), checks its sha256, and lets pip install itself from that wheel
(pip runs from a wheel file put on sys.path). Nothing else is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

PIP_VERSION = "26.3"
PIP_WHEEL = f"pip-{PIP_VERSION}-py3-none-any.whl"
PIP_SHA256 = "f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13"
# The standard index API (PEP 691, JSON flavour of the simple index) that pip itself uses.
INDEX_URL = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def wheel_url() -> str:
    index_page = f"{INDEX_URL}/pip/"
    req = urllib.request.Request(index_page, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    for entry in files:
        if entry["filename"] == PIP_WHEEL:
            return urllib.parse.urljoin(index_page, entry["url"])
    raise SystemExit(f"bootstrap_pip: {index_page} lists no {PIP_WHEEL}")


def main() -> int:
    if sys.prefix == sys.base_prefix:
        raise SystemExit("bootstrap_pip: run this with the python of the virtual environment to fill")
    with tempfile.TemporaryDirectory(prefix="devicefit-pip-") as tmp:
        path = os.path.join(tmp, PIP_WHEEL)
        url = wheel_url()
        print(f"bootstrap_pip: downloading {url}", flush=True)
        with urllib.request.urlopen(url, timeout=120) as resp, open(path, "wb") as out:
            out.write(resp.read())
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != PIP_SHA256:
            raise SystemExit(f"bootstrap_pip: sha256 mismatch for {PIP_WHEEL}: got {digest}, want {PIP_SHA256}")
        cmd = [sys.executable, os.path.join(path, "pip"), "install", "--no-index",
               "--disable-pip-version-check", "--no-warn-script-location", path]
        return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
