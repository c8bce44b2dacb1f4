"""The usage ledger: exactly one row per inference request, streaming or not, finished or cut off.

Owns: ``Meter.record``, keyed by the request id (a unique column), so a second call for the same
request is a no-op rather than a double charge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from tenfold.billing.pricing import inference_cost
from tenfold.config import Settings
from tenfold.store import repo
from tenfold.store.db import Database

log = logging.getLogger("tenfold.billing")


@dataclass(frozen=True)
class UsageEntry:
    request_id: str
    organization_id: str
    api_key_id: str
    endpoint: str
    model: str
    base_model: str
    adapter_digest: str | None
    checkpoint: str | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    finish_reason: str | None


class Meter:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def record(self, e: UsageEntry) -> None:
        cost = inference_cost(self.settings.price_for(e.base_model), prompt_tokens=e.prompt_tokens,
                              cached_tokens=e.cached_tokens, completion_tokens=e.completion_tokens)
        try:
            with self.db.session() as s:
                repo.add_usage(s, request_id=e.request_id, organization_id=e.organization_id,
                               api_key_id=e.api_key_id, endpoint=e.endpoint, model=e.model, base_model=e.base_model,
                               adapter_digest=e.adapter_digest, checkpoint=e.checkpoint,
                               prompt_tokens=e.prompt_tokens, cached_tokens=e.cached_tokens,
                               completion_tokens=e.completion_tokens, cost_micro_usd=cost,
                               finish_reason=e.finish_reason)
        except IntegrityError:
            log.warning("usage for request %s already recorded; not charging twice", e.request_id)
