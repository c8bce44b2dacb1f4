"""``/v1/files``: upload (validated before anything is stored), list, get, delete, content."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tenfold import files
from tenfold.api.deps import PageParams, ctx, list_body, page_params, principal
from tenfold.api.serialize import file_obj
from tenfold.context import Principal

router = APIRouter(prefix="/v1/files")


@router.post("")
async def upload(request: Request, file: UploadFile = File(...), purpose: str = Form(...),
                 p: Principal = Depends(principal)) -> dict:
    c = ctx(request)
    files.check_purpose(purpose)
    data = await file.read(c.settings.max_upload_bytes + 1)  # one byte past the limit is enough to refuse
    files.check_size(c, len(data))
    row = await run_in_threadpool(files.upload, c, p, data=data, filename=file.filename or "upload.jsonl",
                                  purpose=purpose)
    return file_obj(row)


@router.get("")
def list_files(request: Request, purpose: str | None = None, page: PageParams = Depends(page_params),
               p: Principal = Depends(principal)) -> dict:
    rows, more = files.list_files(ctx(request), p, limit=page.limit, after=page.after, purpose=purpose)
    return list_body([file_obj(r) for r in rows], more)


@router.get("/{file_id}")
def get_file(request: Request, file_id: str, p: Principal = Depends(principal)) -> dict:
    return file_obj(files.get(ctx(request), p, file_id))


@router.get("/{file_id}/content")
def content(request: Request, file_id: str, p: Principal = Depends(principal)) -> Response:
    row, data = files.content(ctx(request), p, file_id)
    return Response(data, media_type="application/jsonl",
                    headers={"Content-Disposition": f'attachment; filename="{row.filename}"'})


@router.delete("/{file_id}")
def delete(request: Request, file_id: str, p: Principal = Depends(principal)) -> dict:
    files.delete(ctx(request), p, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
