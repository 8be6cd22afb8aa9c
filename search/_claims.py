"""Candidate claims: which trial builds which candidate, so that no candidate is built twice in a study.

Workers on several machines can draw the same candidate at the same moment. The first trial to insert
``(study, key)`` into a small table in the study's own database builds it; the others reuse its result.
The insert is atomic in SQLite and PostgreSQL alike (a primary key), so no lock service is needed.
"""

from __future__ import annotations

from typing import Any

TABLE = "devicefit_candidate_claims"


class CandidateClaims:
    """Claims in the database at ``url`` (the study's storage URL).

    Args:
        url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``).
        study_name: Claims are per study.
    """

    def __init__(self, url: str, study_name: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.study_name = study_name
        self._engine = sa.create_engine(url)
        metadata = sa.MetaData()
        self._table = sa.Table(
            TABLE,
            metadata,
            sa.Column("study", sa.String(512), primary_key=True),
            sa.Column("key", sa.String(128), primary_key=True),
            sa.Column("trial", sa.Integer, nullable=False),
        )
        metadata.create_all(self._engine, checkfirst=True)

    def claim(self, key: str, trial_number: int) -> int | None:
        """Claim ``key`` for ``trial_number``.

        Returns:
            ``None`` when the claim is ours; otherwise the number of the trial that holds it.
        """
        sa = self._sa
        try:
            with self._engine.begin() as connection:
                connection.execute(sa.insert(self._table).values(study=self.study_name, key=key, trial=trial_number))
            return None
        except sa.exc.IntegrityError:
            with self._engine.connect() as connection:
                holder = connection.execute(
                    sa.select(self._table.c.trial).where(
                        self._table.c.study == self.study_name, self._table.c.key == key
                    )
                ).scalar_one()
            return None if holder == trial_number else int(holder)

    def take_over(self, key: str, old_trial: int, new_trial: int) -> bool:
        """Move the claim from a trial that failed to ``new_trial``; False if someone else moved it first."""
        sa = self._sa
        with self._engine.begin() as connection:
            result = connection.execute(
                sa.update(self._table)
                .where(
                    self._table.c.study == self.study_name,
                    self._table.c.key == key,
                    self._table.c.trial == old_trial,
                )
                .values(trial=new_trial)
            )
        return bool(result.rowcount == 1)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> CandidateClaims:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
