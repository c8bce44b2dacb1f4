"""Files (``/v1/files``): uploads validated before anything is stored, listing, reading and deleting.

Owns: the purposes a caller may upload (``fine-tune``, ``batch``), the size limit, validation per purpose
(fine-tune JSONL by ``tenfold.training.data``, batch lines by ``tenfold.batch.validate``; a bad file is
refused with its lines and nothing is stored), counting a fine-tune file's tokens with the default base
model's tokenizer as training will, and writing the row and the bytes together. Does not own: wire shapes
or HTTP.
"""

from __future__ import annotations

import logging

from tenfold.batch.validate import BatchFileError, validate_batch_file
from tenfold.config import Settings
from tenfold.context import Principal, ServerContext
from tenfold.errors import InvalidRequest, TooLarge, not_found
from tenfold.store import repo
from tenfold.store.tables import File
from tenfold.training.data import DatasetError, Example, validate_jsonl
from tenfold.training.errors import TemplateError
from tenfold.training.tokenize import count_tokens

log = logging.getLogger("tenfold.files")
PURPOSES = ("fine-tune", "batch")


def check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise InvalidRequest(f"Unsupported purpose '{purpose}'. Use one of: {', '.join(PURPOSES)}.", param="purpose")


def check_size(c: ServerContext, nbytes: int) -> None:
    limit = c.settings.max_upload_bytes
    if nbytes > limit:
        raise TooLarge(f"File is larger than the {limit} byte limit (TENFOLD_MAX_UPLOAD_BYTES).", param="file",
                       code="file_too_large")


def upload(c: ServerContext, p: Principal, *, data: bytes, filename: str, purpose: str) -> File:
    """Validate and store an upload (blocking: tokenizes fine-tune files; call it off the event loop)."""
    check_purpose(purpose)
    check_size(c, len(data))
    counts: dict = {}
    if purpose == "batch":
        try:
            n_examples, data_format = validate_batch_file(data).n_requests, "batch"
        except BatchFileError as e:
            raise InvalidRequest(f"Invalid batch file '{filename}': {e}. Nothing was stored; fix the file and "
                                 "upload it again.", param="file", code="invalid_file") from None
    else:
        try:
            summary = validate_jsonl(data, purpose=purpose)
        except DatasetError as e:
            raise InvalidRequest(f"Invalid training file '{filename}': {e}. Nothing was stored; fix the file and "
                                 "upload it again.", param="file", code="invalid_file") from None
        n_examples, data_format = summary.n_examples, summary.format
        counts = _count_tokens(c.settings, summary.examples)
    file_id = repo.new_id("file-", 12)
    staged = c.artifacts.stage(data)
    key = f"files/{file_id}.jsonl"
    try:
        with c.db.session() as s:
            row = repo.create_file(s, organization_id=p.organization_id, file_id=file_id, filename=filename,
                                   purpose=purpose, nbytes=len(data), storage_key=key,
                                   n_examples=n_examples, data_format=data_format, **counts)
            c.artifacts.commit(staged, key)
    except BaseException:
        c.artifacts.discard(staged)
        c.artifacts.delete(key)
        raise
    return row


def _count_tokens(settings: Settings, examples: tuple[Example, ...]) -> dict:
    """Tokens of a training file as training would tokenize it, with the default base model's tokenizer."""
    from tenfold.models.registry import shared_tokenizer

    with shared_tokenizer(settings.base_model, models_dir=settings.models_dir) as tokenizer:
        try:
            count = count_tokens(tokenizer, examples)
        except TemplateError as e:  # a base model without a chat template cannot count (or train on) chats
            log.warning("not counting tokens with %s: %s", settings.base_model, e)
            return {}
    return {"n_tokens": count.n_tokens, "max_example_tokens": count.max_example_tokens,
            "tokenizer": settings.base_model}


def list_files(c: ServerContext, p: Principal, *, limit: int, after: str | None, purpose: str | None
               ) -> tuple[list[File], bool]:
    with c.db.session() as s:
        return repo.list_files(s, organization_id=p.organization_id, limit=limit, after=after, purpose=purpose)


def get(c: ServerContext, p: Principal, file_id: str) -> File:
    with c.db.session() as s:
        row = repo.get_file(s, organization_id=p.organization_id, file_id=file_id)
    if row is None:
        raise not_found("file", file_id, hint="List your files with GET /v1/files.")
    return row


def content(c: ServerContext, p: Principal, file_id: str) -> tuple[File, bytes]:
    row = get(c, p, file_id)
    return row, c.artifacts.read(row.storage_key)


def delete(c: ServerContext, p: Principal, file_id: str) -> None:
    with c.db.session() as s:
        row = repo.get_file(s, organization_id=p.organization_id, file_id=file_id)
        if row is None:
            raise not_found("file", file_id, hint="List your files with GET /v1/files.")
        key = row.storage_key
        repo.delete_file(s, row=row)
    c.artifacts.delete(key)
