"""SQL plumbing shared by the device lease and the latency cache: both live in the study's own database.

The URL is the Optuna RDB storage URL (``sqlite:///run/study.db``, ``postgresql://...``), so every worker of
a distributed study, on any machine, sees the same leases and the same cached measurements. devicefit's
tables are prefixed ``devicefit_`` and never touch Optuna's. SQLAlchemy is imported lazily (it comes with
Optuna).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: SQLite's own wait for a locked database file, in seconds (per statement).
SQLITE_BUSY_SECONDS = 30.0


class Database:
    """An SQLAlchemy engine for ``url``, made on first use, and the tables created on first use.

    Args:
        url: An SQLAlchemy database URL.
        tables: Called once with a ``sqlalchemy.MetaData`` to define the tables this user needs.
    """

    def __init__(self, url: str, tables: Callable[[Any], None]) -> None:
        if not url or "://" not in url:
            raise ValueError(f"not a database URL: {url!r} (e.g. sqlite:///run/study.db)")
        self.url = url
        self._define = tables
        self._engine: Any = None
        self._metadata: Any = None
        self._lock = threading.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def engine(self) -> Any:
        """The engine; the tables exist once this returns."""
        with self._lock:
            if self._engine is None:
                import sqlalchemy as sa
                from sqlalchemy.pool import NullPool

                if self.is_sqlite:
                    # One connection per use: several processes share the file, and none keeps it open.
                    engine = sa.create_engine(
                        self.url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, poolclass=NullPool
                    )
                else:
                    engine = sa.create_engine(self.url, pool_pre_ping=True)
                metadata = sa.MetaData()
                self._define(metadata)
                _create_tables(engine, metadata)
                self._engine, self._metadata = engine, metadata
            return self._engine

    def table(self, name: str) -> Any:
        """A table defined by ``tables``."""
        self.engine()
        return self._metadata.tables[name]

    def dispose(self) -> None:
        """Close the engine's connections (a later use makes a new engine)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


def _create_tables(engine: Any, metadata: Any) -> None:
    """Create missing tables; another process creating them at the same moment is not an error."""
    import sqlalchemy as sa

    for attempt in range(5):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except sa.exc.OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))  # "table already exists" from a concurrent creator, or a lock
        except sa.exc.IntegrityError:
            return  # PostgreSQL: the concurrent creator won the race on the type/table name


def retry_locked(action: Callable[[], T], *, attempts: int = 20, pause_seconds: float = 0.05) -> T:
    """Run ``action``, retrying a bounded number of times while SQLite says the database is locked."""
    import sqlalchemy as sa

    for attempt in range(attempts):
        try:
            return action()
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(pause_seconds * (attempt + 1))
    raise AssertionError("unreachable")
