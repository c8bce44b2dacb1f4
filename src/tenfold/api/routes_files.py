"""``/v1/files``: upload (validated before anything is stored), list, get, delete, content."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tenfold import files
from tenfold.api.contract import errors, text_body
from tenfold.api.deps import PageParams, ctx, list_body, page_params, principal
from tenfold.api.serialize import file_obj
from tenfold.context import Principal
from tenfold.types.common import Deleted, ListResponse
from tenfold.types.files import FileObject

router = APIRouter(prefix="/v1/files")


@router.post("", response_model=FileObject, responses=errors(400, 401, 413))
async def upload(request: Request, file: UploadFile = File(...),
                 purpose: Literal["fine-tune", "batch"] = Form(..., description="fine-tune or batch"),
                 p: Principal = Depends(principal)) -> dict:
    c = ctx(request)
    data = await file.read(c.settings.max_upload_bytes + 1)  # one byte past the limit is enough to refuse
    files.check_size(c, len(data))
    row = await run_in_threadpool(files.upload, c, p, data=data, filename=file.filename or "upload.jsonl",
                                  purpose=purpose)
    return file_obj(row)


@router.get("", response_model=ListResponse[FileObject], responses=errors(400, 401))
def list_files(request: Request, purpose: str | None = None, page: PageParams = Depends(page_params),
               p: Principal = Depends(principal)) -> dict:
    rows, more = files.list_files(ctx(request), p, limit=page.limit, after=page.after, purpose=purpose)
    return list_body([file_obj(r) for r in rows], more)


@router.get("/{file_id}", response_model=FileObject, responses=errors(401, 404))
def get_file(request: Request, file_id: str, p: Principal = Depends(principal)) -> dict:
    return file_obj(files.get(ctx(request), p, file_id))


@router.get("/{file_id}/content", response_class=Response,
            responses={**text_body("application/jsonl", "The file's bytes."), **errors(401, 404)})
def content(request: Request, file_id: str, p: Principal = Depends(principal)) -> Response:
    row, data = files.content(ctx(request), p, file_id)
    return Response(data, media_type="application/jsonl",
                    headers={"Content-Disposition": f'attachment; filename="{row.filename}"'})


@router.delete("/{file_id}", response_model=Deleted, responses=errors(401, 404))
def delete(request: Request, file_id: str, p: Principal = Depends(principal)) -> dict:
    files.delete(ctx(request), p, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
