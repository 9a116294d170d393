"""The release ledger: what each release is and every side effect it had, in `DATABASE_URL`.

`Ledger` is the one object the runbook receives. It is two books over one database:
- `ReleaseBook` (`release_book.py`): releases, their tickets and overrides, their flow runs;
- `DeliveryBook` (`delivery_book.py`): every side effect by its unique key, with its state.

Why mixins and not two attributes (`ledger.releases.…`): every caller (runbook, steps, commands,
cockpit, status) says `ledger.release(…)`, `ledger.mark_done(…)`, and both books share the
engine and the migration on first use that `db.Store` gives them; a book alone works too
(`DeliveryBook(url)`). What needs both books lives here: `forget_release`, in one transaction.
"""

from __future__ import annotations

import sqlalchemy as sa

from gestan_release.store import db
from gestan_release.store.delivery_book import FINISHED, Delivery, DeliveryBook
from gestan_release.store.release_book import ReleaseBook
from gestan_release.store.tables import (
    DeliveryRecord,
    OverrideRecord,
    ReleaseRecord,
    ReleaseTicketRecord,
)

__all__ = ["Delivery", "Ledger"]


class Ledger(ReleaseBook, DeliveryBook):
    """Releases, their tickets and deliveries, in the database at `url` (migrated on first use)."""

    @classmethod
    def existing(cls, url: str) -> Ledger | None:
        """The ledger if its database exists; None (and nothing created) for a missing SQLite
        file, so that read-only commands and dry runs leave no file behind."""
        path = db.sqlite_file(url)
        if path is not None and not path.exists():
            return None
        return cls(url)

    def forget_release(self, version: str) -> bool:
        """Remove a release that did nothing yet (rejected at the approval gate), so that the
        next run plans it afresh; refused (False) once any of its side effects happened."""
        with self._session() as s:
            row = s.get(ReleaseRecord, version)
            if row is None:
                return True
            done = s.scalars(
                sa.select(DeliveryRecord.key).where(
                    DeliveryRecord.version == version, DeliveryRecord.state.in_(FINISHED)
                )
            ).first()
            if done is not None:
                return False
            for model in (DeliveryRecord, ReleaseTicketRecord, OverrideRecord):
                s.execute(sa.delete(model).where(model.version == version))
            s.delete(row)
            return True
