"""``client.jobs``: fine-tuning jobs (``/v1/fine_tuning/jobs``), their events and checkpoints.

Owns: create (or estimate with ``dry_run``)/list/get/cancel/resume, reading events, the metrics series and
checkpoints, evaluation of models on a file, and ``wait`` — polling a job until it ends
while handing each new event, oldest first, to a callback (what ``tenfold train`` follows).
Does not own: running training (the server's workers) or drawing progress (``tenfold.cli.follow``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from tenfold.sdk.client import Tenfold

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Jobs:
    def __init__(self, client: Tenfold) -> None:
        self._client = client

    def _path(self, job_id: str, tail: str = "") -> str:
        return f"/fine_tuning/jobs/{quote(job_id, safe='')}{tail}"

    def create(
        self,
        model: str,
        training_file: str,
        *,
        hyperparameters: dict[str, Any] | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        validation_file: str | None = None,
        method: str = "sft",
        from_checkpoint: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Queue a LoRA fine-tune (``method`` "sft" or "dpo") of ``model`` on an uploaded file id; returns the
        job, or with ``dry_run`` the estimate (examples, tokens, steps, cost) and creates nothing.
        ``from_checkpoint`` ("<job>" or "<job>/step-N") continues from that adapter."""
        body: dict[str, Any] = {"model": model, "training_file": training_file}
        if hyperparameters:
            body["hyperparameters"] = dict(hyperparameters)
        if method not in ("sft", "supervised"):
            body["method"] = {"type": method}
        for key, value in (("suffix", suffix), ("seed", seed), ("validation_file", validation_file),
                           ("from_checkpoint", from_checkpoint)):
            if value is not None:
                body[key] = value
        if dry_run:
            body["dry_run"] = True
        return self._client.request("POST", "/fine_tuning/jobs", json=body)

    def resume(self, job_id: str) -> dict[str, Any]:
        """Queue a failed or cancelled job again; it continues from its last checkpoint."""
        return self._client.request("POST", self._path(job_id, "/resume"))

    def metrics(self, job_id: str) -> dict[str, Any]:
        """The per-step series (train_loss, valid_loss, learning_rate, tokens_per_second, …), oldest first."""
        return self._client.request("GET", self._path(job_id, "/metrics"))

    def evaluate(self, models: list[str], examples: list[dict[str, Any]], *, max_examples: int = 100,
                 max_new_tokens: int = 32) -> dict[str, Any]:
        """Loss and exact-match accuracy of each model (base, ``<job>`` or ``<job>/step-N``) on ``examples``
        (decoded JSONL rows), side by side. Runs on the server; may take a while for big files."""
        return self._client.request("POST", "/fine_tuning/evaluations", timeout=max(self._client.timeout, 600.0),
                                    json={"models": list(models), "examples": list(examples),
                                          "max_examples": max_examples, "max_new_tokens": max_new_tokens})

    def list(self, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        """The list envelope of jobs, newest first."""
        return self._client.request("GET", "/fine_tuning/jobs", params={"limit": limit, "after": after})

    def get(self, job_id: str) -> dict[str, Any]:
        return self._client.request("GET", self._path(job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the server to stop the job; returns the job (status may still be ``running`` briefly)."""
        return self._client.request("POST", self._path(job_id, "/cancel"))

    def events(
        self, job_id: str, after: str | None = None, limit: int = 100, order: str = "asc"
    ) -> dict[str, Any]:
        """A page of events. ``order="asc"`` is oldest first and ``after`` then means "newer than"."""
        return self._client.request(
            "GET", self._path(job_id, "/events"), params={"after": after, "limit": limit, "order": order}
        )

    def checkpoints(self, job_id: str, limit: int = 100, after: str | None = None) -> dict[str, Any]:
        """The list envelope of saved checkpoints (``<job>/step-N``), newest first."""
        return self._client.request(
            "GET", self._path(job_id, "/checkpoints"), params={"limit": limit, "after": after}
        )

    def wait(
        self,
        job_id: str,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 1.0,
        *,
        on_job: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is ``succeeded``, ``failed`` or ``cancelled`` and return it.

        ``on_event`` gets every event not seen before, oldest first, including those already there when
        called; ``on_job`` gets the job object after each poll. ``timeout`` (seconds) raises
        ``TimeoutError``; KeyboardInterrupt propagates and leaves the job running.
        """
        follower = EventFollower(self, job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)  # job first, then events: events written before it ended are seen
            for event in follower.poll():
                if on_event is not None:
                    on_event(event)
            if on_job is not None:
                on_job(job)
            if job.get("status") in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.get('status')} after {timeout:g}s")
            time.sleep(poll)


class EventFollower:
    """Remembers the last event seen for one job and returns only newer ones, oldest first."""

    def __init__(self, jobs: Jobs, job_id: str) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._last: str | None = None
        self._seen: set[str] = set()

    def poll(self) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        for _ in range(1000):  # pages of 100; a bound instead of `while True`
            page = self._jobs.events(self._job_id, after=self._last, limit=100, order="asc")
            data = page.get("data") or []
            for event in data:
                event_id = str(event.get("id"))
                if event_id in self._seen:
                    continue
                self._seen.add(event_id)
                new.append(event)
            if data:
                self._last = str(data[-1].get("id"))
            if not data or not page.get("has_more"):
                break
        return new
