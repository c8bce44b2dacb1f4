"""Named leases in the database: which process acts for a name for a while (the deployment controller, one
per database; the batch runner, one per batch), so several api processes on one database never do the same
work twice.

Owns: ``take_lease`` (hold or renew; compare-and-set, so exactly one holder wins on SQLite and PostgreSQL
alike) and ``release_lease``. Does not own: what a lease guards, or sessions.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenfold.store.tables import Lease


def take_lease(s: Session, *, name: str, holder: str, seconds: float, now: float | None = None) -> bool:
    """Hold (or renew) the lease ``name`` for ``seconds``: True when ``holder`` holds it now. Exactly one
    holder wins on SQLite and PostgreSQL alike (compare-and-set on an expired or own lease)."""
    now = time.time() if now is None else now
    res = s.execute(update(Lease).where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
                    .values(holder=holder, expires_at=now + seconds))
    if res.rowcount == 1:
        return True
    if s.scalar(select(Lease.name).where(Lease.name == name)) is not None:
        return False
    try:
        with s.begin_nested():
            s.add(Lease(name=name, holder=holder, expires_at=now + seconds))
    except IntegrityError:
        return False
    return True


def release_lease(s: Session, *, name: str, holder: str) -> None:
    s.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
