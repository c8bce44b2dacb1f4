"""Following a fine-tuning job: new events oldest first, and polling until the job ends.

Owns: ``EventFollower`` (remembers the last event seen and returns only newer ones, paging through
``list_events(order="asc")``) and the ``wait`` loops behind ``client.fine_tuning.jobs.wait`` — once blocking,
once for asyncio, the only code written twice. Each poll reads the job first, then its events, so every
event written before the job ended is handed over before ``wait`` returns. Does not own: drawing progress
(``tenfold.cli.follow``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tenfold.types.jobs import FineTuningJob, JobEvent

if TYPE_CHECKING:
    from tenfold.sdk.resources.fine_tuning import Jobs

PAGE = 100
MAX_PAGES = 1000  # per poll; a bound instead of `while True`


class _Seen:
    def __init__(self) -> None:
        self.last: str | None = None
        self.ids: set[str] = set()

    def take(self, page: Any, into: list[JobEvent]) -> bool:
        """Add the page's unseen events; True when there may be more pages."""
        for event in page.data:
            if event.id not in self.ids:
                self.ids.add(event.id)
                into.append(event)
        if page.data:
            self.last = page.data[-1].id
        return bool(page.data) and page.has_more


class EventFollower:
    """Blocking: ``poll()`` returns the events of ``job_id`` not returned before, oldest first."""

    def __init__(self, jobs: Jobs, job_id: str, *, timeout_seconds: float | None = None) -> None:
        self._jobs, self._job_id, self._timeout = jobs, job_id, timeout_seconds
        self._seen = _Seen()

    def poll(self) -> list[JobEvent]:
        new: list[JobEvent] = []
        for _ in range(MAX_PAGES):
            page = self._jobs.list_events(self._job_id, after=self._seen.last, limit=PAGE, order="asc",
                                          timeout_seconds=self._timeout)
            if not self._seen.take(page, new):
                break
        return new


class AsyncEventFollower(EventFollower):
    """``EventFollower`` for ``AsyncTenfold``: ``await poll()``."""

    async def poll(self) -> list[JobEvent]:  # type: ignore[override]
        new: list[JobEvent] = []
        for _ in range(MAX_PAGES):
            page = await self._jobs.list_events(self._job_id, after=self._seen.last, limit=PAGE, order="asc",
                                                timeout_seconds=self._timeout)
            if not self._seen.take(page, new):
                break
        return new


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _check(job: FineTuningJob, deadline: float | None, timeout: float | None) -> bool:
    """True when the job ended; raises TimeoutError past the deadline."""
    if job.done:
        return True
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError(f"job {job.id} still {job.status} after {timeout:g}s")
    return False


def wait_for_job(jobs: Jobs, job_id: str, *, on_event: Callable[[JobEvent], None] | None,
                 on_job: Callable[[FineTuningJob], None] | None, poll: float, timeout: float | None,
                 timeout_seconds: float | None) -> FineTuningJob:
    follower = EventFollower(jobs, job_id, timeout_seconds=timeout_seconds)
    deadline = _deadline(timeout)
    while True:
        job = jobs.retrieve(job_id, timeout_seconds=timeout_seconds)
        for event in follower.poll():
            if on_event is not None:
                on_event(event)
        if on_job is not None:
            on_job(job)
        if _check(job, deadline, timeout):
            return job
        time.sleep(poll)


async def async_wait_for_job(jobs: Jobs, job_id: str, *, on_event: Callable[[JobEvent], None] | None,
                             on_job: Callable[[FineTuningJob], None] | None, poll: float, timeout: float | None,
                             timeout_seconds: float | None) -> FineTuningJob:
    follower = AsyncEventFollower(jobs, job_id, timeout_seconds=timeout_seconds)
    deadline = _deadline(timeout)
    while True:
        job = await jobs.retrieve(job_id, timeout_seconds=timeout_seconds)
        for event in await follower.poll():
            if on_event is not None:
                on_event(event)
        if on_job is not None:
            on_job(job)
        if _check(job, deadline, timeout):
            return job
        await asyncio.sleep(poll)


__all__ = ["EventFollower", "AsyncEventFollower", "wait_for_job", "async_wait_for_job"]
