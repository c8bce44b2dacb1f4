"""The batch runner: an asyncio task in the server process (started by the app lifespan, like the training
worker) that moves batches through ``validating → in_progress → finalizing → completed`` (or ``failed``,
``expired``, ``cancelling → cancelled``) and feeds their lines to the engine at priority 1 (spare capacity
only), through the same inference path (``tenfold.inference``) as ``/v1/chat/completions``.

Owns: per-line progress in the database (``batch_lines``): a line is finished exactly once, together with
its output line and the batch's counts, so a server killed mid-batch resumes with the lines still pending
and never repeats a finished one. Each line has a request id derived from (batch, line), so a line cut off
by a restart and run again is never charged twice. Writing the output and error files (OpenAI line format,
joined on ``custom_id``); a failed line carries the status code and OpenAI error body the same request would
have got over HTTP, rendered by the function the composition root hands in (the mapping lives in the api).
Several api processes on one database each run a runner: a batch is stepped only by the runner holding its
lease (``batch:<id>`` in ``lease_repo``, renewed while it works, released when the batch ends), so no two
processes run the same batch's lines; a runner that dies lets its lease lapse and another takes the batch
over, re-running only the lines still pending. Does not own: the API contract of create/cancel
(``tenfold.batch.service``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable

from tenfold.batch.validate import BatchFileError, BatchLineSpec, parse_batch_file
from tenfold.context import Principal, ServerContext
from tenfold.errors import RateLimited, ServiceError
from tenfold.inference import requests, streams
from tenfold.store import lease_repo, repo

log = logging.getLogger("tenfold.batch")


def line_request_id(batch_id: str, line_no: int) -> str:
    return "batch_req_" + hashlib.sha256(f"{batch_id}/{line_no}".encode()).hexdigest()[:24]


def _error_line(rid: str, custom_id: str, code: str, message: str) -> dict:
    return {"id": rid, "custom_id": custom_id, "response": None, "error": {"code": code, "message": message}}


RenderError = Callable[[ServiceError], tuple[int, dict]]  # an error → (HTTP status, OpenAI error body)


class BatchRunner:
    def __init__(self, c: ServerContext, *, render_error: RenderError) -> None:
        self.c = c
        self.render_error = render_error
        self.db = c.db
        self.poll = c.settings.batch_poll_seconds
        self.concurrency = max(1, c.settings.batch_concurrency)
        self.slice_seconds = 2.0
        self.max_yield_seconds = 30.0
        self.idle_seconds = c.settings.batch_idle_seconds
        self._specs: dict[str, list[BatchLineSpec]] = {}
        self._task: asyncio.Task | None = None
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_seconds = max(5.0, c.settings.controller_lease_seconds)
        self._held: set[str] = set()  # batch leases this runner holds

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="tenfold-batch-runner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for name in list(self._held):  # a clean stop hands its batches over at once, not when leases lapse
            try:
                await self._db(lease_repo.release_lease, name=name, holder=self.holder)
            except Exception:  # noqa: BLE001 - the lease then lapses on its own
                log.warning("batch lease %s: release failed", name, exc_info=True)
        self._held.clear()

    async def _db(self, fn, /, **kw):
        def run():
            with self.db.session() as s:
                return fn(s, **kw)
        return await asyncio.to_thread(run)

    async def _loop(self) -> None:
        while True:
            try:
                ids = await self._db(repo.active_batch_ids)
                for batch_id in ids:  # one step per batch per round: fair, and a cancel is seen promptly
                    try:
                        await self.step(batch_id)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # one broken batch must not hold up the others
                        log.exception("batch %s: step failed; retrying later", batch_id)
                        await asyncio.sleep(0.5)
                if not ids:
                    await asyncio.sleep(self.poll)
            except asyncio.CancelledError:
                raise
            except Exception:  # the runner must survive anything one batch does
                log.exception("batch runner error")
                await asyncio.sleep(1.0)

    async def step(self, batch_id: str) -> None:
        """One step of a batch, if this runner holds (or takes) the batch's lease."""
        name = f"batch:{batch_id}"
        if not await self._db(lease_repo.take_lease, name=name, holder=self.holder, seconds=self.lease_seconds):
            return  # another api process is running this batch
        self._held.add(name)
        renew = asyncio.get_running_loop().create_task(self._renew(name))
        try:
            await self._step(batch_id)
        finally:
            renew.cancel()
        b = await self._db(repo.get_batch, batch_id=batch_id, organization_id=None)
        if b is None or b.status in ("completed", "failed", "expired", "cancelled"):
            await self._db(lease_repo.release_lease, name=name, holder=self.holder)
            self._held.discard(name)

    async def _renew(self, name: str) -> None:
        """Keep the lease while a step runs (lines in flight can outlast it)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._db(lease_repo.take_lease, name=name, holder=self.holder, seconds=self.lease_seconds)
            except Exception:  # noqa: BLE001 - a missed renewal is retried; the lease outlasts two of them
                log.warning("batch lease %s: renewal failed", name, exc_info=True)

    async def _step(self, batch_id: str) -> None:
        b = await self._db(repo.get_batch, batch_id=batch_id, organization_id=None)
        if b is None:
            return
        if b.status == "validating":
            await self._validate(b)
        elif b.status == "in_progress":
            if time.time() >= b.expires_at:
                await self._expire(b)
            else:
                await self._run_some(b)
        elif b.status == "finalizing":
            await self._finalize(b, "finalizing", "completed")
        elif b.status == "cancelling":
            await self._finalize(b, "cancelling", "cancelled")

    # ---- validating ----------------------------------------------------------------------------

    def _read(self, b) -> list[BatchLineSpec]:
        with self.db.session() as s:
            f = repo.get_file(s, organization_id=b.organization_id, file_id=b.input_file_id)
        if f is None:
            raise BatchFileError(0, f"the input file {b.input_file_id} no longer exists")
        lines = parse_batch_file(self.c.artifacts.read(f.storage_key))
        for n, line in enumerate(lines, start=1):
            if line.url != b.endpoint:
                raise BatchFileError(n, f"url {line.url} does not match the batch's endpoint {b.endpoint}; every "
                                        "line of a batch must use the batch's endpoint")
        return lines

    async def _specs_for(self, b) -> list[BatchLineSpec]:
        if b.id not in self._specs:
            self._specs[b.id] = await asyncio.to_thread(self._read, b)
        return self._specs[b.id]

    async def _validate(self, b) -> None:
        try:
            specs = await self._specs_for(b)
        except OSError as e:
            await self._fail(b, BatchFileError(0, f"the input file {b.input_file_id} cannot be read ({e})"))
            return
        except BatchFileError as e:
            await self._fail(b, e)
            return

        def start(s) -> None:
            if repo.move_batch(s, batch_id=b.id, from_status=("validating",), to_status="in_progress",
                               in_progress_at=time.time(), total=len(specs)):
                repo.add_batch_lines(s, batch_id=b.id, custom_ids=[x.custom_id for x in specs])
        await asyncio.to_thread(self._in_session, start)

    async def _fail(self, b, e: BatchFileError) -> None:
        err = {"object": "list", "data": [{"code": "invalid_input_file", "message": str(e),
                                           "param": "input_file_id", "line": e.line or None}]}
        await self._db(repo.move_batch, batch_id=b.id, from_status=("validating",), to_status="failed",
                       failed_at=time.time(), errors=err)

    def _in_session(self, fn):
        with self.db.session() as s:
            return fn(s)

    # ---- in progress ---------------------------------------------------------------------------

    async def _yield_to_interactive(self) -> None:
        """Start no batch line while interactive requests are in flight or ran within the last
        ``batch_idle_seconds`` (bounded by ``max_yield_seconds``, so steady interactive traffic slows a batch
        down but cannot stall it for ever)."""
        t = self.c.traffic
        deadline = time.monotonic() + self.max_yield_seconds
        while t.idle_for() < self.idle_seconds and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _run_some(self, b) -> None:
        """Run pending lines with at most ``concurrency`` in flight for about ``slice_seconds`` (then the
        loop moves on to the next batch); stop launching as soon as the batch leaves ``in_progress``."""
        try:
            specs = await self._specs_for(b)
        except (OSError, BatchFileError) as e:  # the input file was deleted or damaged mid-batch
            await self._fail_pending(b, "input_file_unavailable", f"The batch's input file can no longer be read: {e}")
            await self._db(repo.move_batch, batch_id=b.id, from_status=("in_progress",), to_status="finalizing",
                           finalizing_at=time.time())
            return
        pending = await self._db(repo.pending_batch_lines, batch_id=b.id, limit=self.concurrency * 16)
        if not pending:
            await self._db(repo.move_batch, batch_id=b.id, from_status=("in_progress",), to_status="finalizing",
                           finalizing_at=time.time())
            return
        running: set[asyncio.Task] = set()
        outcomes: list[str] = []
        deadline = time.monotonic() + self.slice_seconds

        def collect(done: set[asyncio.Task]) -> None:
            for t in done:
                if t.exception() is not None:
                    log.error("batch %s line failed unexpectedly: %r", b.id, t.exception())
                else:
                    outcomes.append(t.result())

        try:
            for n, cid in pending:
                await self._yield_to_interactive()
                while len(running) >= self.concurrency:
                    done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    collect(done)
                if "retry" in outcomes or time.monotonic() > deadline:
                    break
                current = await self._db(repo.get_batch, batch_id=b.id, organization_id=None)
                if current is None or current.status != "in_progress" or time.time() >= current.expires_at:
                    break
                running.add(asyncio.create_task(self._run_line(b, n, cid, specs[n])))
            if running:
                done, running = await asyncio.wait(running)  # lines in flight finish and are kept
                collect(done)
        except asyncio.CancelledError:
            for t in running:
                t.cancel()  # server shutting down: these lines stay pending and run again after a restart
            raise
        if "retry" in outcomes:
            await asyncio.sleep(self.poll)

    async def _run_line(self, b, line_no: int, custom_id: str, spec: BatchLineSpec) -> str:
        rid = line_request_id(b.id, line_no)
        p = Principal(organization_id=b.organization_id, api_key_id=b.api_key_id, is_admin=False)
        kind = requests.ENDPOINTS[spec.url]
        try:
            body = requests.parse_body(kind, spec.body)
            call = await requests.prepare(self.c, p, kind, body, request_id=rid, priority=1, batch_id=b.id)
            response = await streams.complete(self.c, p, call)
            status, result = "completed", {"id": rid, "custom_id": custom_id, "error": None,
                                           "response": {"status_code": 200, "request_id": rid, "body": response}}
        except ServiceError as e:
            if isinstance(e, RateLimited) and e.code != "spend_limit_exceeded":
                return "retry"  # engine busy: the line stays pending and runs later
            code, error_body = self.render_error(e)
            status, result = "failed", {"id": rid, "custom_id": custom_id, "error": None,
                                        "response": {"status_code": code, "request_id": rid, "body": error_body}}
        except Exception as e:  # an internal failure fails this line, not the batch or the runner
            log.exception("batch %s line %d failed", b.id, line_no)
            status, result = "failed", _error_line(rid, custom_id, "server_error",
                                                   f"Internal error ({type(e).__name__}).")
        await self._db(repo.finish_batch_line, batch_id=b.id, line_no=line_no, status=status, result=result)
        return status

    async def _fail_pending(self, b, code: str, message: str) -> None:
        pending = await self._db(repo.pending_batch_lines, batch_id=b.id, limit=1_000_000)

        def write(s) -> None:
            for n, cid in pending:
                repo.finish_batch_line(s, batch_id=b.id, line_no=n, status="failed",
                                       result=_error_line(line_request_id(b.id, n), cid, code, message))
        await asyncio.to_thread(self._in_session, write)

    async def _expire(self, b) -> None:
        await self._fail_pending(b, "batch_expired", "This request could not be executed before the completion "
                                                     "window expired.")
        await self._finalize(b, "in_progress", "expired")

    # ---- finalizing ----------------------------------------------------------------------------

    def _write_files(self, b) -> tuple[str | None, str | None]:
        with self.db.session() as s:
            lines = repo.finished_batch_lines(s, batch_id=b.id)
        out = [x.result for x in lines if x.status == "completed"]
        err = [x.result for x in lines if x.status != "completed"]
        ids = []
        for suffix, rows in (("output", out), ("error", err)):
            if not rows:
                ids.append(None)
                continue
            file_id = "file-" + hashlib.sha256(f"{b.id}/{suffix}".encode()).hexdigest()[:24]
            ids.append(file_id)
            with self.db.session() as s:
                if repo.get_file(s, organization_id=b.organization_id, file_id=file_id) is not None:
                    continue  # written before a restart
            data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
            key = f"files/{file_id}.jsonl"
            staged = self.c.artifacts.stage(data)
            with self.db.session() as s:
                repo.create_file(s, organization_id=b.organization_id, file_id=file_id,
                                 filename=f"{b.id}_{suffix}.jsonl", purpose=f"batch_{suffix}", nbytes=len(data),
                                 storage_key=key, n_examples=len(rows), data_format="batch")
                self.c.artifacts.commit(staged, key)
        return ids[0], ids[1]

    async def _finalize(self, b, from_status: str, to_status: str) -> None:
        output_id, error_id = await asyncio.to_thread(self._write_files, b)
        await self._db(repo.move_batch, batch_id=b.id, from_status=(from_status,), to_status=to_status,
                       output_file_id=output_id, error_file_id=error_id, **{f"{to_status}_at": time.time()})
        self._specs.pop(b.id, None)
