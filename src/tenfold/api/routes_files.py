"""``/v1/files``: upload (validated before anything is stored; fine-tune files also get their tokens counted
with the default base model's tokenizer), list, get, delete, content."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tenfold.api.deps import PageParams, Principal, ctx, list_body, page_params, principal
from tenfold.api.errors import APIError, bad_request, not_found
from tenfold.api.serialize import file_obj
from tenfold.batch.validate import BatchFileError, validate_batch_file
from tenfold.config import Settings
from tenfold.store import repo
from tenfold.training.data import DatasetError, Example, validate_jsonl
from tenfold.training.errors import TemplateError
from tenfold.training.tokenize import count_tokens

log = logging.getLogger("tenfold.api")
router = APIRouter(prefix="/v1/files")
PURPOSES = ("fine-tune", "batch")


@router.post("")
async def upload(request: Request, file: UploadFile = File(...), purpose: str = Form(...),
                 p: Principal = Depends(principal)) -> dict:
    c = ctx(request)
    if purpose not in PURPOSES:
        raise bad_request(f"Unsupported purpose '{purpose}'. Use one of: {', '.join(PURPOSES)}.", param="purpose")
    limit = c.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise APIError(413, f"File is larger than the {limit} byte limit (TENFOLD_MAX_UPLOAD_BYTES).", param="file")
    filename = file.filename or "upload.jsonl"
    counts: dict = {}
    if purpose == "batch":
        try:
            n_examples, data_format = validate_batch_file(data).n_requests, "batch"
        except BatchFileError as e:
            raise bad_request(f"Invalid batch file '{filename}': {e}. Nothing was stored; fix the file and upload "
                              "it again.", param="file", code="invalid_file") from None
    else:
        try:
            summary = await run_in_threadpool(validate_jsonl, data, purpose=purpose)
        except DatasetError as e:
            raise bad_request(f"Invalid training file '{filename}': {e}. Nothing was stored; fix the file and "
                              "upload it again.", param="file", code="invalid_file") from None
        n_examples, data_format = summary.n_examples, summary.format
        counts = await run_in_threadpool(_count_tokens, c.settings, summary.examples)
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
    return file_obj(row)


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


@router.get("")
def list_files(request: Request, purpose: str | None = None, page: PageParams = Depends(page_params),
               p: Principal = Depends(principal)) -> dict:
    with ctx(request).db.session() as s:
        rows, more = repo.list_files(s, organization_id=p.organization_id, limit=page.limit, after=page.after,
                                     purpose=purpose)
        return list_body([file_obj(r) for r in rows], more)


def _get(request: Request, file_id: str, p: Principal):
    with ctx(request).db.session() as s:
        row = repo.get_file(s, organization_id=p.organization_id, file_id=file_id)
    if row is None:
        raise not_found("file", file_id, hint="List your files with GET /v1/files.")
    return row


@router.get("/{file_id}")
def get_file(request: Request, file_id: str, p: Principal = Depends(principal)) -> dict:
    return file_obj(_get(request, file_id, p))


@router.get("/{file_id}/content")
def content(request: Request, file_id: str, p: Principal = Depends(principal)) -> Response:
    row = _get(request, file_id, p)
    return Response(ctx(request).artifacts.read(row.storage_key), media_type="application/jsonl",
                    headers={"Content-Disposition": f'attachment; filename="{row.filename}"'})


@router.delete("/{file_id}")
def delete(request: Request, file_id: str, p: Principal = Depends(principal)) -> dict:
    c = ctx(request)
    with c.db.session() as s:
        row = repo.get_file(s, organization_id=p.organization_id, file_id=file_id)
        if row is None:
            raise not_found("file", file_id)
        key = row.storage_key
        repo.delete_file(s, row=row)
    c.artifacts.delete(key)
    return {"id": file_id, "object": "file", "deleted": True}
