"""Device leases: one measurement at a time per physical device, across processes and machines.

A lease is a row in ``devicefit_device_leases`` of the study's database, keyed by the physical device
(``adb:<serial>``, ``ssh:<host>``, ``local:<host name>``; see ``_runner.physical_device_key``). Acquiring is
one atomic statement: INSERT a new row (the primary key makes a second INSERT fail), or UPDATE a row whose
lease has expired. A holder renews its lease while it measures (``Lease.keepalive``), so a lease expires
only when its holder died or hung: a dead worker does not hold a phone forever.

Expiry times are wall-clock seconds since the epoch of the acquiring machine; machines that share a study
must keep their clocks within a small fraction of ``ttl_seconds`` (NTP does).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from devicefit.evaluators._errors import DeviceBusyError, LeaseLostError
from devicefit.evaluators._sql import Database, retry_locked

TABLE = "devicefit_device_leases"


def _define(metadata: Any) -> None:
    import sqlalchemy as sa

    sa.Table(
        TABLE,
        metadata,
        sa.Column("device_key", sa.String(255), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("device_id", sa.String(255), nullable=False, default=""),
        sa.Column("acquired_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


class Lease:
    """A held lease on one physical device. Release it (or use :meth:`DeviceLeases.hold`).

    Attributes:
        device_key: The physical device.
        holder: ``<host>:<pid>:<random>``, unique to this lease.
        expires_at: When it expires unless renewed (epoch seconds).
    """

    def __init__(self, leases: DeviceLeases, device_key: str, holder: str, expires_at: float) -> None:
        self._leases = leases
        self.device_key = device_key
        self.holder = holder
        self.expires_at = expires_at
        self._renewed_at = leases.clock()
        self.released = False

    def keepalive(self) -> None:
        """Renew the lease if a third of its time has passed since the last renewal.

        Raises:
            LeaseLostError: It expired and someone else took it (the measurement must be dropped).
        """
        if self.released:
            raise LeaseLostError(f"the lease on {self.device_key} was already released")
        now = self._leases.clock()
        if now - self._renewed_at < self._leases.ttl_seconds / 3:
            return
        self.expires_at = self._leases.renew(self)
        self._renewed_at = now

    def release(self) -> None:
        """Give the device back (idempotent; a lease that was taken over is left to its new holder)."""
        if not self.released:
            self.released = True
            self._leases.release(self)


class DeviceLeases:
    """Exclusive, expiring leases on physical devices, held in the study's database.

    Args:
        url: The study's storage URL (SQLAlchemy): ``sqlite:///...`` or ``postgresql://...``.
        ttl_seconds: A lease expires this long after its last renewal.
        wait_seconds: How long :meth:`acquire` waits for a busy device before giving up.
        poll_seconds: First pause between attempts while waiting (doubles up to 2 s).
        clock: Wall clock in epoch seconds (injectable for tests of expiry).
        sleep: Pause function (injectable).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 600.0,
        wait_seconds: float = 3600.0,
        poll_seconds: float = 0.2,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if ttl_seconds <= 0 or wait_seconds < 0 or poll_seconds <= 0:
            raise ValueError("ttl_seconds and poll_seconds must be positive, wait_seconds >= 0")
        self.database = Database(url, _define)
        self.ttl_seconds = ttl_seconds
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.sleep = sleep

    def try_acquire(self, device_key: str, device_id: str = "") -> Lease | None:
        """Take the lease now if it is free or expired; None if someone else holds it."""
        import sqlalchemy as sa

        table = self.database.table(TABLE)
        engine = self.database.engine()
        holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"

        def attempt() -> Lease | None:
            now = self.clock()
            expires = now + self.ttl_seconds
            try:
                with engine.begin() as connection:
                    connection.execute(
                        sa.insert(table).values(
                            device_key=device_key, holder=holder, device_id=device_id, acquired_at=now, expires_at=expires
                        )
                    )
                return Lease(self, device_key, holder, expires)
            except sa.exc.IntegrityError:
                pass  # a row exists: take it over only if it has expired
            with engine.begin() as connection:
                taken = connection.execute(
                    sa.update(table)
                    .where(table.c.device_key == device_key, table.c.expires_at < now)
                    .values(holder=holder, device_id=device_id, acquired_at=now, expires_at=expires)
                ).rowcount
            return Lease(self, device_key, holder, expires) if taken == 1 else None

        return retry_locked(attempt)

    def acquire(self, device_key: str, device_id: str = "", *, wait_seconds: float | None = None) -> Lease:
        """Take the lease, waiting at most ``wait_seconds`` (default: the constructor's) for it to be free.

        Raises:
            DeviceBusyError: Still held by someone else when the wait ran out (the message names the holder).
        """
        bound = self.wait_seconds if wait_seconds is None else wait_seconds
        started = self.clock()
        pause = self.poll_seconds
        while True:
            lease = self.try_acquire(device_key, device_id)
            if lease is not None:
                return lease
            waited = self.clock() - started
            if waited >= bound:
                holder = self.holder_of(device_key)
                who = holder[0] if holder else "?"
                raise DeviceBusyError(
                    f"{device_id or device_key}: {device_key} is busy: held by {who} for more than this measurement "
                    f"may wait ({bound:g} s)",
                    holder=who,
                    waited_seconds=waited,
                    device_id=device_id,
                )
            self.sleep(min(pause, max(0.0, bound - waited)))
            pause = min(pause * 2, 2.0)

    @contextlib.contextmanager
    def hold(self, device_key: str, device_id: str = "", *, wait_seconds: float | None = None) -> Iterator[Lease]:
        """``with leases.hold(key) as lease:`` acquire, then release whatever happens inside."""
        lease = self.acquire(device_key, device_id, wait_seconds=wait_seconds)
        try:
            yield lease
        finally:
            lease.release()

    def renew(self, lease: Lease) -> float:
        """Push the lease's expiry ``ttl_seconds`` ahead; return the new expiry.

        Raises:
            LeaseLostError: The row is no longer this holder's.
        """
        import sqlalchemy as sa

        table = self.database.table(TABLE)
        expires = self.clock() + self.ttl_seconds

        def attempt() -> int:
            with self.database.engine().begin() as connection:
                return connection.execute(
                    sa.update(table)
                    .where(table.c.device_key == lease.device_key, table.c.holder == lease.holder)
                    .values(expires_at=expires)
                ).rowcount

        if retry_locked(attempt) != 1:
            raise LeaseLostError(
                f"the lease on {lease.device_key} expired and was taken over during the measurement "
                f"(ttl {self.ttl_seconds:g} s): its figures may be disturbed, so it is dropped"
            )
        return expires

    def release(self, lease: Lease) -> None:
        """Delete the lease's row if it is still this holder's."""
        import sqlalchemy as sa

        table = self.database.table(TABLE)

        def attempt() -> None:
            with self.database.engine().begin() as connection:
                connection.execute(
                    sa.delete(table).where(table.c.device_key == lease.device_key, table.c.holder == lease.holder)
                )

        retry_locked(attempt)

    def holder_of(self, device_key: str) -> tuple[str, float] | None:
        """``(holder, expires_at)`` of the device's lease row, or None when there is none."""
        import sqlalchemy as sa

        table = self.database.table(TABLE)
        with self.database.engine().connect() as connection:
            row = connection.execute(
                sa.select(table.c.holder, table.c.expires_at).where(table.c.device_key == device_key)
            ).first()
        return None if row is None else (str(row[0]), float(row[1]))

    def close(self) -> None:
        """Close the database connections."""
        self.database.dispose()
