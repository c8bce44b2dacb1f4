"""The W&B API keys sent with job requests (``wandb_api_key``), held only in this process's memory.

Owns: where such a key lives between the request and the training subprocess. It is never written to the
database, the job's spec, events, logs or any file: ``submit`` holds it here keyed by job id, and the
training worker of the same process reads it when it starts the trainer and passes it in the child's
environment (``WANDB_API_KEY``), nowhere else. So a key can only be accepted where a worker runs in this
process (``tenfold serve``, role ``all``): a worker in another process or machine could only get it through
storage, so there ``submit`` refuses the field and the workers' own ``WANDB_API_KEY`` is the way.
Consequences, documented in docs/api.md: a server restart forgets the keys of jobs that have not finished
(the job then falls back to the worker's ``WANDB_API_KEY``, or fails at W&B login and can be resumed); a
key is forgotten when its job succeeds and kept while a failed or cancelled job may still be resumed.
Does not own: what the trainer does with it (``tenfold.training.wandb_run``).
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_keys: dict[str, str] = {}
_workers = 0  # training workers started in this process


def worker_started() -> None:
    global _workers
    with _lock:
        _workers += 1


def worker_stopped() -> None:
    global _workers
    with _lock:
        _workers = max(0, _workers - 1)


def can_hold() -> bool:
    """Whether a key given with a request can reach a trainer without being stored (an in-process worker)."""
    with _lock:
        return _workers > 0


def hold(job_id: str, key: str) -> None:
    with _lock:
        _keys[job_id] = key


def get(job_id: str) -> str | None:
    with _lock:
        return _keys.get(job_id)


def drop(job_id: str) -> None:
    with _lock:
        _keys.pop(job_id, None)
