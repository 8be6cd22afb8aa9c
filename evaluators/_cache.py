"""The latency cache: a measurement is reused whenever the same bytes would run the same way on the same device.

Key: SHA-256 of the artifact's content hash, the device profile id and the physical device behind it, the
Paddle Lite places, the runtime that runs the model (its version, or the ``benchmark_bin`` hash), threads,
power mode and :data:`PROTOCOL_VERSION`. So a hit never crosses devices (nor two machines both called
``host-x86``), and a new runtime or protocol measures again. Values are :class:`LatencyResult` records in
``devicefit_latency_cache`` of the study's database: shared by every trial and every study in that
storage, and by every worker of a distributed study.

This relies on exports being byte-identical for the same weights: ``spaces/_export.py`` makes them so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any

from devicefit.evaluators._sql import Database, retry_locked
from devicefit.evaluators._types import LatencyResult

TABLE = "devicefit_latency_cache"
#: Bumped when the measurement protocol changes what a figure means: older entries are then not reused.
PROTOCOL_VERSION = 2


def _define(metadata: Any) -> None:
    import sqlalchemy as sa

    sa.Table(
        TABLE,
        metadata,
        sa.Column("cache_key", sa.String(64), primary_key=True),
        sa.Column("device_id", sa.String(255), nullable=False),
        sa.Column("physical_device", sa.String(255), nullable=False),
        sa.Column("artifact_hash", sa.String(64), nullable=False),
        sa.Column("runtime", sa.String(255), nullable=False),
        sa.Column("result_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


@dataclasses.dataclass(frozen=True)
class CacheKey:
    """What makes two measurements interchangeable.

    Attributes:
        artifact_hash: SHA-256 of the exported program and weights.
        device_id: The device profile's id.
        physical_device: The device behind it (``_runner.physical_device_key``).
        places: Paddle Lite places of the conversion.
        runtime: The runtime that runs the model.
        threads: Inference threads.
        power_mode: Paddle Lite power mode asked for.
    """

    artifact_hash: str
    device_id: str
    physical_device: str
    places: str
    runtime: str
    threads: int
    power_mode: str

    def digest(self) -> str:
        """The key as stored: SHA-256 (hex) of these fields and :data:`PROTOCOL_VERSION`."""
        fields = {**dataclasses.asdict(self), "protocol": PROTOCOL_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode("utf-8")).hexdigest()


class LatencyCache:
    """Measured latencies by :class:`CacheKey`, in an SQL database (the study's storage).

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///run/study.db``.
    """

    def __init__(self, url: str) -> None:
        self.database = Database(url, _define)

    def get(self, key: CacheKey) -> LatencyResult | None:
        """The stored result for ``key``, or None. The result is returned as stored (``cache_hit`` false)."""
        import sqlalchemy as sa

        table = self.database.table(TABLE)

        def read() -> Any:
            with self.database.engine().connect() as connection:
                return connection.execute(
                    sa.select(table.c.result_json).where(table.c.cache_key == key.digest())
                ).scalar_one_or_none()

        stored = retry_locked(read)
        if stored is None:
            return None
        return LatencyResult(**json.loads(stored))

    def put(self, key: CacheKey, result: LatencyResult) -> None:
        """Store ``result`` under ``key`` (a result already there is replaced). Only measured results belong here."""
        import sqlalchemy as sa

        if result.source != "measured" or result.cache_hit:
            raise ValueError("only fresh measurements go into the latency cache")
        table = self.database.table(TABLE)
        digest = key.digest()
        row = {
            "cache_key": digest,
            "device_id": key.device_id,
            "physical_device": key.physical_device,
            "artifact_hash": key.artifact_hash,
            "runtime": key.runtime,
            "result_json": json.dumps(result.to_dict(), sort_keys=True),
            "created_at": time.time(),
        }

        def write() -> None:
            try:
                with self.database.engine().begin() as connection:
                    connection.execute(sa.delete(table).where(table.c.cache_key == digest))
                    connection.execute(sa.insert(table).values(**row))
            except sa.exc.IntegrityError:
                pass  # another worker stored the same key at the same moment: its figure serves as well

        retry_locked(write)

    def __len__(self) -> int:
        import sqlalchemy as sa

        table = self.database.table(TABLE)
        with self.database.engine().connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def close(self) -> None:
        """Close the database connections."""
        self.database.dispose()
