"""Progress of a run: a banner with the chosen settings, then one line per trial."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from devicefit.search._records import TrialRecord


def format_bytes(size: float) -> str:
    """``412 KB``-style size."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Prints progress lines to a stream (standard error by default), unless quiet.

    Args:
        total: Trials the run will have when it ends.
        stream: Where to print.
        quiet: Print nothing but :meth:`error` lines.
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.started = time.monotonic()
        #: Trials of the study counted so far (set when resuming, then one more per printed trial).
        self.done = 0

    def _print(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.stream, flush=True)

    def info(self, line: str) -> None:
        """A free-form line."""
        self._print(line)

    def banner(self, title: str, settings: list[tuple[str, str]]) -> None:
        """The settings the run chose, aligned, one per line."""
        self._print(title)
        width = max((len(name) for name, _ in settings), default=0)
        for name, value in settings:
            self._print(f"  {name.ljust(width)}  {value}")

    def _prefix(self, number: int) -> str:
        self.done += 1
        elapsed = time.monotonic() - self.started
        return f"[{self.done:>3}/{self.total} {elapsed:6.0f}s] #{number:<3}"

    def trial(self, number: int, record: TrialRecord, *, duplicate_of: int | None = None) -> None:
        """One finished trial."""
        latencies = "  ".join(
            f"{device} {result.latency_ms:.3f} ms ({result.source_label})" for device, result in record.latencies.items()
        )
        again = f"  (same candidate as trial #{duplicate_of}, not rebuilt)" if duplicate_of is not None else ""
        if record.screened_out is not None:
            again += f"  screened out: {record.screened_out}"
        self._print(
            f"{self._prefix(number)} {record.key}  acc {record.accuracy.accuracy:.4f} "
            f"({record.accuracy.fidelity}, {record.accuracy.split})  {latencies}  "
            f"{format_bytes(record.size_bytes)}  {record.seconds:.1f}s{again}"
        )

    def trial_failed(self, number: int, key: str, reason: str) -> None:
        """A trial that failed or was rejected; the run goes on."""
        self._print(f"{self._prefix(number)} {key}  FAILED: {reason}")

    def error(self, line: str) -> None:
        """Always printed."""
        print(line, file=self.stream, flush=True)
