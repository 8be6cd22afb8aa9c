"""Why a latency measurement failed: one exception type per reason, each with a message a user can act on.

A measurement failure fails that one measurement (and so that one trial: ``search/_fit.py`` records
``"<ExceptionType>: <message>"`` on the trial and the search goes on). The evaluator stays usable.
"""

from __future__ import annotations

from collections.abc import Sequence


class MeasurementError(RuntimeError):
    """A latency measurement failed.

    Attributes:
        device_id: The device profile's id ("" when not known).
        output_tail: The last lines the device or its tool printed, for diagnosis.
    """

    def __init__(self, message: str, *, device_id: str = "", output_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.device_id = device_id
        self.output_tail: tuple[str, ...] = tuple(output_tail)


class DeviceUnavailableError(MeasurementError):
    """The device cannot be measured at all: its tool (``adb``, ``ssh``) is missing, it is not connected, or
    its profile lacks what the runner needs (a serial, a host, a ``benchmark_bin``)."""


class DeviceGoneError(MeasurementError):
    """The device went away during the measurement (unplugged, offline, connection lost)."""


class MeasurementTimeout(MeasurementError):
    """A step on the device did not finish within its bound; what ran there was stopped.

    Attributes:
        timeout_seconds: The bound that was exceeded.
    """

    def __init__(
        self, message: str, *, timeout_seconds: float, device_id: str = "", output_tail: Sequence[str] = ()
    ) -> None:
        super().__init__(message, device_id=device_id, output_tail=output_tail)
        self.timeout_seconds = timeout_seconds


class UnparsableOutputError(MeasurementError):
    """The device's tool ran but its output does not contain the figures (a crash, another tool, a new format)."""


class DeviceCommandError(MeasurementError):
    """A command on the device failed (non-zero exit) for another reason than the device going away.

    Attributes:
        exit_code: The command's exit status.
    """

    def __init__(
        self, message: str, *, exit_code: int | None, device_id: str = "", output_tail: Sequence[str] = ()
    ) -> None:
        super().__init__(message, device_id=device_id, output_tail=output_tail)
        self.exit_code = exit_code


class DeviceBusyError(MeasurementError):
    """Another worker held the device's lease for longer than this measurement may wait.

    Attributes:
        holder: Who holds the lease (``host:pid:token``).
        waited_seconds: How long this measurement waited.
    """

    def __init__(self, message: str, *, holder: str, waited_seconds: float, device_id: str = "") -> None:
        super().__init__(message, device_id=device_id)
        self.holder = holder
        self.waited_seconds = waited_seconds


class LeaseLostError(MeasurementError):
    """This worker's device lease expired and was taken over during the measurement: the figures may be
    disturbed by another worker's runs, so the measurement is dropped."""


def tail_lines(text: str, count: int = 20) -> tuple[str, ...]:
    """The last ``count`` non-empty lines of ``text``."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return tuple(lines[-count:])
