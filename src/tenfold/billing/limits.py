"""Monthly spend limits per organization (set by an admin; UTC calendar months).

Owns: ``check_spend_limit``, called before every inference request (interactive and batch lines): once
the organization's spend this month reaches its limit, requests are refused (``RateLimited``, code
``spend_limit_exceeded``) with a message naming the limit, and ``retry_after`` points at the start of next
month; reading and setting the limit (``get_limit``, ``set_limit``: admins only). Does not own: the ledger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from tenfold.billing.pricing import to_micro, usd
from tenfold.context import Principal
from tenfold.errors import InvalidRequest, PermissionDenied, RateLimited, not_found
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
        raise RateLimited(f"Organization {organization_id} has reached its monthly spend limit of ${usd(limit)} "
                          f"(spent ${usd(spent)} in {month} UTC). Ask an admin to raise it "
                          f"(`tenfold usage limit --org {organization_id} --usd <amount>`) or wait for next month.",
                          code="spend_limit_exceeded", retry_after=max(1, int(end - now)))


@dataclass(frozen=True)
class SpendLimit:
    organization_id: str
    limit_micro_usd: int | None
    spent_this_month_micro_usd: int


def _limit(s, organization_id: str) -> SpendLimit:
    org = repo.get_organization(s, organization_id=organization_id)
    start, _ = month_bounds(time.time())
    spent = repo.spend_since(s, organization_id=organization_id, since=start)
    return SpendLimit(organization_id, org.monthly_spend_limit_micro_usd, spent)


def get_limit(db: Database, p: Principal, *, organization_id: str) -> SpendLimit:
    """An organization's limit and this month's spend: its own members or an admin may look."""
    with db.session() as s:
        if (not p.is_admin and organization_id != p.organization_id) or \
                repo.get_organization(s, organization_id=organization_id) is None:
            raise not_found("organization", organization_id)
        return _limit(s, organization_id)


def set_limit(db: Database, p: Principal, *, organization_id: str, usd_amount: str | int | None) -> SpendLimit:
    """Set (a dollar amount such as ``"12.50"``) or clear (None) the monthly limit; admins only."""
    if not p.is_admin:
        raise PermissionDenied("Setting a spend limit needs an admin API key.", code="admin_required")
    limit = None
    if usd_amount is not None:
        try:
            limit = to_micro(usd_amount)
        except (ValueError, ArithmeticError):
            raise InvalidRequest("monthly_spend_limit_usd must be a dollar amount such as \"12.50\" (at most six "
                                 "decimal places) or null.", param="monthly_spend_limit_usd") from None
        if limit < 0:
            raise InvalidRequest("monthly_spend_limit_usd must not be negative.", param="monthly_spend_limit_usd")
    with db.session() as s:
        if repo.set_spend_limit(s, organization_id=organization_id, limit_micro_usd=limit) is None:
            raise not_found("organization", organization_id)
        return _limit(s, organization_id)
