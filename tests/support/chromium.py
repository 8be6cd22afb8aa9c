"""A real browser for tests: Debian's headless Chromium, driven over the DevTools protocol.

``scripts/test-deps.sh`` (run by ``make test``) installs the ``chromium`` package; no browser is downloaded
by a test. The DevTools protocol is JSON over a WebSocket; the small WebSocket client here (RFC 6455, text
frames, client-side masking) needs only the standard library. Every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import selectors
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class ChromiumError(RuntimeError):
    """The browser could not be started or did not answer in time."""


class WebSocket:
    """A minimal WebSocket client for one ``ws://`` URL (text messages only)."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        match = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if match is None:
            raise ChromiumError(f"not a ws:// URL: {url}")
        host, port, path = match.group(1), int(match.group(2)), match.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout_seconds)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ChromiumError("the browser closed the WebSocket during the handshake")
            response += chunk
        head, _, self._buffer = response.partition(b"\r\n\r\n")
        expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if b" 101 " not in head.split(b"\r\n")[0] or expected.encode() not in head:
            raise ChromiumError(f"WebSocket handshake refused: {head[:200]!r}")

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ChromiumError("the browser closed the WebSocket")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode("utf-8"))

    def receive(self) -> str:
        """The next text message (pings are answered; a close frame raises)."""
        parts: list[bytes] = []
        while True:
            first, second = self._read(2)
            opcode, final = first & 0x0F, bool(first & 0x80)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                raise ChromiumError("the browser closed the WebSocket")
            parts.append(payload)
            if final:
                return b"".join(parts).decode("utf-8")

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Page:
    """One browser tab, through the DevTools protocol: commands, and the events seen so far."""

    def __init__(self, socket_url: str, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.ws = WebSocket(socket_url, timeout_seconds)
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        command_id = self._next_id
        self.ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_seconds
        while time.monotonic() < deadline:
            message = json.loads(self.ws.receive())
            if message.get("id") == command_id:
                if "error" in message:
                    raise ChromiumError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self.events.append(message)
        raise ChromiumError(f"{method}: no answer within {self.timeout_seconds} s")

    def wait_for(self, method: str, predicate: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        """The first event ``method`` (already seen, or arriving within the timeout)."""
        deadline = time.monotonic() + self.timeout_seconds
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and predicate(event):
                    return event
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise ChromiumError(f"no {method} event within {self.timeout_seconds} s")
            self.events.append(json.loads(self.ws.receive()))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise ChromiumError(f"evaluating {expression[:80]!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(f"log: {params['entry'].get('text')}")
        return found

    def requested_urls(self) -> list[str]:
        """Every URL the page asked the network stack for (needs ``Network.enable``)."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        self.ws.close()


class Chromium:
    """Headless Chromium with a fresh profile (context manager); :meth:`open` loads a page.

    Args:
        profile_dir: An empty folder for ``--user-data-dir``.
        timeout_seconds: Bound of every wait (start, commands, page load).

    Raises:
        ChromiumError: ``chromium`` is not installed or does not start (the message says how to install it).
    """

    def __init__(self, profile_dir: Path, *, timeout_seconds: float = 60.0) -> None:
        executable = shutil.which("chromium")
        if executable is None:
            raise ChromiumError("chromium is not installed: run `bash scripts/test-deps.sh` (make test does it), "
                                "which installs Debian's chromium package")
        self.timeout_seconds = timeout_seconds
        self.stderr_lines: list[str] = []
        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            self.port = self._devtools_port()
        except BaseException:
            self.close()
            raise
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _devtools_port(self) -> int:
        assert self.process.stderr is not None
        deadline = time.monotonic() + self.timeout_seconds
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stderr, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if not selector.select(timeout=0.5):
                    continue
                chunk = os.read(self.process.stderr.fileno(), 65536)
                if not chunk:
                    break
                buffer += chunk
                match = _LISTENING.search(buffer.decode("utf-8", "replace"))
                if match:
                    self.stderr_lines = buffer.decode("utf-8", "replace").splitlines()
                    return int(re.match(r"ws://[^:]+:(\d+)/", match.group(1)).group(1))  # type: ignore[union-attr]
        tail = buffer.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise ChromiumError(f"chromium did not start its DevTools server within {self.timeout_seconds} s "
                            f"(exit code {self.process.poll()}): {' | '.join(tail)}")

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for raw in iter(self.process.stderr.readline, b""):
            self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip())

    def open(self, url: str) -> Page:
        """A new tab at ``about:blank`` with Runtime, Log, Network and Page events on, then ``url`` loaded."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            target = json.loads(response.read().decode())
        page = Page(target["webSocketDebuggerUrl"], self.timeout_seconds)
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
        page.call("Page.navigate", url=url)
        page.wait_for("Page.loadEventFired")
        return page

    def close(self) -> None:
        """End the browser (its own process group) and reap it."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, 9)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=10)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
