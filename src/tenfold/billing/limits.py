"""Monthly spend limits per organization (set by an admin; UTC calendar months).

Owns: ``check_spend_limit``, called before every inference request (interactive and batch lines): once
the organization's spend this month reaches its limit, requests answer 429 with a message naming the
limit, and ``Retry-After`` points at the start of next month. Does not own: setting the limit (the admin
route) or the ledger itself.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from tenfold.api.errors import APIError
from tenfold.billing.pricing import usd
from tenfold.store import repo
from tenfold.store.db import Database


def month_bounds(now: float) -> tuple[float, float]:
    d = datetime.fromtimestamp(now, tz=timezone.utc)
    start = datetime(d.year, d.month, 1, tzinfo=timezone.utc)
    nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=timezone.utc)
    return start.timestamp(), nxt.timestamp()


def check_spend_limit(db: Database, organization_id: str, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    with db.session() as s:
        org = repo.get_organization(s, organization_id=organization_id)
        limit = org.monthly_spend_limit_micro_usd if org is not None else None
        if limit is None:
            return
        start, end = month_bounds(now)
        spent = repo.spend_since(s, organization_id=organization_id, since=start)
    if spent >= limit:
        month = datetime.fromtimestamp(start, tz=timezone.utc).strftime("%Y-%m")
        raise APIError(429, f"Organization {organization_id} has reached its monthly spend limit of ${usd(limit)} "
                            f"(spent ${usd(spent)} in {month} UTC). Ask an admin to raise it "
                            f"(`tenfold usage limit --org {organization_id} --usd <amount>`) or wait for next month.",
                       code="spend_limit_exceeded", headers={"Retry-After": str(max(1, int(end - now)))})
