"""The batch lifecycle as seen by the API: create (checks the input file and parameters) and cancel.

Owns: the OpenAI create contract (``input_file_id`` of purpose ``batch``, ``endpoint`` one of
``/v1/chat/completions`` or ``/v1/completions``, ``completion_window`` ``24h``; ``metadata`` arrives checked
by its wire type), listing, and the cancel transition (``validating|in_progress → cancelling``; the runner
finishes the lines in flight, keeps every finished result and moves it to ``cancelled``). Does not own:
running lines (``tenfold.batch.runner``) or HTTP.
"""

from __future__ import annotations

import time

from tenfold.errors import Conflict, InvalidRequest, not_found
from tenfold.inference.requests import ENDPOINTS
from tenfold.store import repo
from tenfold.store.db import Database
from tenfold.store.tables import Batch

WINDOWS = {"24h": 24 * 3600}


def create(db: Database, *, organization_id: str, api_key_id: str, input_file_id: str, endpoint: str,
           completion_window: str, metadata: dict[str, str] | None = None) -> Batch:
    if endpoint not in ENDPOINTS:
        raise InvalidRequest(f"Unsupported endpoint '{endpoint}'. Use one of: {', '.join(ENDPOINTS)}.", param="endpoint")
    if completion_window not in WINDOWS:
        raise InvalidRequest(f"Unsupported completion_window '{completion_window}'. Use '24h'.",
                          param="completion_window")
    with db.session() as s:
        f = repo.get_file(s, organization_id=organization_id, file_id=input_file_id)
        if f is None:
            raise not_found("file", input_file_id, hint="Upload the requests with POST /v1/files (purpose 'batch').")
        if f.purpose != "batch":
            raise InvalidRequest(f"File '{input_file_id}' has purpose '{f.purpose}'; a batch needs a file uploaded with "
                              "purpose 'batch'.", param="input_file_id")
        return repo.create_batch(s, organization_id=organization_id, api_key_id=api_key_id, endpoint=endpoint,
                                 input_file_id=input_file_id, completion_window=completion_window, metadata=metadata,
                                 expires_at=time.time() + WINDOWS[completion_window])


def list_batches(db: Database, *, organization_id: str, limit: int, after: str | None
                 ) -> tuple[list[Batch], bool]:
    with db.session() as s:
        return repo.list_batches(s, organization_id=organization_id, limit=limit, after=after)


def usage(db: Database, *, batch_ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """Billed (prompt, cached, completion) tokens per batch."""
    with db.session() as s:
        return repo.batch_usage(s, batch_ids=batch_ids)


def get(db: Database, *, organization_id: str, batch_id: str) -> Batch:
    with db.session() as s:
        row = repo.get_batch(s, batch_id=batch_id, organization_id=organization_id)
    if row is None:
        raise not_found("batch", batch_id, hint="List your batches with GET /v1/batches.")
    return row


def cancel(db: Database, *, organization_id: str, batch_id: str) -> Batch:
    row = get(db, organization_id=organization_id, batch_id=batch_id)
    with db.session() as s:
        moved = repo.move_batch(s, batch_id=batch_id, from_status=("validating", "in_progress"),
                                to_status="cancelling", cancelling_at=time.time())
    if not moved and row.status not in ("cancelling", "cancelled"):
        raise Conflict(f"Batch {batch_id} is {row.status} and can no longer be cancelled.",
                       code="batch_not_cancellable")
    return get(db, organization_id=organization_id, batch_id=batch_id)
