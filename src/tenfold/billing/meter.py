"""The usage ledger: exactly one row per inference request, streaming or not, finished or cut off,
interactive or batch, and one per fine-tuning job that succeeds.

Owns: ``Meter.record``, keyed by the request id (a unique column), so a second call for the same
request is a no-op rather than a double charge; choosing the price row (the model called if configured,
else its base model) and the batch discount; ``add_training_usage``, the job's row for its trained tokens,
written in the same transaction as its move to ``succeeded``. Does not own: counting tokens
(``tenfold.inference``) or reading the ledger (``tenfold.billing.export``). ``add_replica_usage`` writes a
dedicated deployment's replica-seconds (the controller decides when, from its billing watermark).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from tenfold.billing.pricing import inference_cost, training_cost
from tenfold.config import Settings
from tenfold.store import repo
from tenfold.store.db import Database
from tenfold.store.tables import FineTuningJob

log = logging.getLogger("tenfold.billing")

INTERACTIVE = "TEXT_COMPLETION_INFERENCE_USAGE"
BATCH = "BATCH_INFERENCE_USAGE"
DEPLOYMENT = "deployment"  # replica-seconds of a dedicated deployment


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
    deployment_id: str | None = None
    batch_id: str | None = None  # set for Batch API lines: billed with the batch discount
    started_at: float | None = None


class Meter:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def cost(self, e: UsageEntry) -> tuple[int, int]:
        """(cost in micro-dollars, discount in basis points) for an entry. Tokens served on a dedicated
        deployment cost nothing: the deployment bills its replica-seconds instead."""
        if e.deployment_id is not None:
            return 0, 0
        price = self.settings.price_for(e.base_model, e.model)
        discount = price.batch_discount_bps if e.batch_id else 0
        return inference_cost(price, prompt_tokens=e.prompt_tokens, cached_tokens=e.cached_tokens,
                              completion_tokens=e.completion_tokens, discount_bps=discount), discount

    def record(self, e: UsageEntry, *, attempts: int = 5) -> bool:
        """Write the row; False if this request was already recorded (nothing charged twice). A write that
        fails for a transient database reason is retried: the unique request id makes retries safe."""
        for attempt in range(1, attempts + 1):
            try:
                return self._write(e)
            except OperationalError:
                if attempt == attempts:
                    raise
                log.warning("usage write for %s failed (attempt %d); retrying", e.request_id, attempt)
                time.sleep(0.05 * 2 ** attempt)
        return False

    def _write(self, e: UsageEntry) -> bool:
        cost, discount = self.cost(e)
        try:
            with self.db.session() as s:
                if repo.usage_exists(s, request_id=e.request_id):
                    log.warning("usage for request %s already recorded; not charging twice", e.request_id)
                    return False
                repo.add_usage(s, request_id=e.request_id, organization_id=e.organization_id,
                               api_key_id=e.api_key_id, endpoint=e.endpoint, model=e.model, base_model=e.base_model,
                               adapter_digest=e.adapter_digest, checkpoint=e.checkpoint,
                               prompt_tokens=e.prompt_tokens, cached_tokens=e.cached_tokens,
                               completion_tokens=e.completion_tokens, cost_micro_usd=cost,
                               finish_reason=e.finish_reason, usage_type=BATCH if e.batch_id else INTERACTIVE,
                               deployment_id=e.deployment_id, batch_id=e.batch_id, discount_bps=discount,
                               started_at=e.started_at if e.started_at is not None else time.time())
        except IntegrityError:
            log.warning("usage for request %s already recorded; not charging twice", e.request_id)
            return False
        return True


def add_training_usage(s: Session, settings: Settings, *, job: FineTuningJob, trained_tokens: int,
                       digest: str) -> None:
    """The job's one usage row (keyed by its id) for ``trained_tokens`` at its base model's training rate."""
    cost = training_cost(settings.price_for(job.model), tokens=trained_tokens)
    repo.add_usage(s, organization_id=job.organization_id, api_key_id=job.api_key_id or "", request_id=job.id,
                   endpoint="fine_tuning.jobs", model=job.id, base_model=job.model, adapter_digest=digest,
                   checkpoint=None, prompt_tokens=trained_tokens, cached_tokens=0, completion_tokens=0,
                   cost_micro_usd=cost, finish_reason=None)


def add_replica_usage(s: Session, settings: Settings, *, organization_id: str, deployment_id: str, base_model: str,
                      hardware_profile: str, replica_id: str, start: float, seconds: int) -> None:
    """One usage row for ``seconds`` of one replica from ``start`` (keyed by replica and start, so the same
    span is never written twice), at the hardware profile's ``replica_per_second``."""
    price = settings.hardware_price(hardware_profile).replica_per_second
    repo.add_usage(s, organization_id=organization_id, api_key_id="", request_id=f"{replica_id}@{start:.3f}",
                   endpoint="deployments", model=deployment_id, base_model=base_model, adapter_digest=None,
                   checkpoint=None, prompt_tokens=0, cached_tokens=0, completion_tokens=0,
                   cost_micro_usd=seconds * price, finish_reason=None, usage_type=DEPLOYMENT,
                   deployment_id=deployment_id, started_at=start, accelerator_type=hardware_profile,
                   accelerator_seconds=seconds)
