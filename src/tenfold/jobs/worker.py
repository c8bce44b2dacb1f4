"""The training worker: claims queued jobs and runs each in a subprocess (``python -m
tenfold.training.main``, or torchrun of ``tenfold.training.ddp`` on ``n_procs`` processes), turning its
JSON-lines progress into job events, checkpoints and status; beside
it, a validator thread claims jobs in ``validating_files`` and validates their files
(``tenfold.jobs.validate``), so a new job is validated at once even while another one trains.

Owns: the two loops, the subprocess lifecycle (spawn, heartbeat, cancel by SIGTERM, kill if it lingers),
the child's environment (a W&B key sent with the job's request goes there as ``WANDB_API_KEY``, from
``tenfold.jobs.wandb_keys``, and nowhere else), mapping recipe events to rows (the usage row of a succeeded
job bills its trained plus evaluated tokens), and resume on retry. Status changes go through
``tenfold.jobs.lifecycle``. Training runs in a child process so a crash or OOM cannot take the api down, and
cancel is a signal. Does not own: the recipe (``tenfold.training``) or what
validation checks (``tenfold.jobs.validate``).
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_mod
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tenfold.artifacts.storage import ArtifactStore
from tenfold.billing.meter import add_training_usage
from tenfold.config import Settings
from tenfold.jobs import lifecycle, metrics, wandb_keys
from tenfold.jobs.validate import validate_job
from tenfold.store import repo
from tenfold.store.db import Database

log = logging.getLogger("tenfold.worker")


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM when the worker thread that started us dies, so a
    killed server never leaves an orphan trainer writing into a job that another worker resumes."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Worker:
    def __init__(self, settings: Settings, db: Database, artifacts: ArtifactStore) -> None:
        self.settings = settings
        self.db = db
        self.artifacts = artifacts
        self.worker_id = f"worker-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Run the loops in a thread of this process; from now on the api of this process may accept W&B keys
        with job requests (``tenfold.jobs.wandb_keys``), since this worker can hand them to its trainers."""
        self._thread = threading.Thread(target=self.run_forever, name="tenfold-worker", daemon=True)
        self._thread.start()
        wandb_keys.worker_started()

    def stop(self) -> None:
        if self._thread is not None:
            wandb_keys.worker_stopped()
        self._stop.set()
        proc = self._proc
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        if self._thread:
            self._thread.join(timeout=15)

    def run_forever(self) -> None:
        validator = threading.Thread(target=self._validate_forever, name="tenfold-validator", daemon=True)
        validator.start()
        try:
            self._loop(self._train_next, "worker")
        finally:
            validator.join(timeout=15)
            lifecycle.release_validations(self.db, worker_id=self.worker_id)

    def _loop(self, one: Callable[[], bool], what: str) -> None:
        """Call ``one()`` until stopped; wait a poll interval whenever it found nothing to do."""
        while not self._stop.is_set():
            try:
                if not one():
                    self._stop.wait(self.settings.worker_poll_seconds)
            except Exception:  # the loop must survive anything one job does
                log.exception("%s loop error", what)
                self._stop.wait(1.0)

    def _train_next(self) -> bool:
        lifecycle.requeue_stale(self.db, lease_seconds=self.settings.job_lease_seconds)
        job_id = lifecycle.claim_next(self.db, worker_id=self.worker_id)
        if job_id is not None:
            self.run_job(job_id)
        return job_id is not None

    def _validate_next(self) -> bool:
        job_id = lifecycle.claim_validation(self.db, worker_id=self.worker_id,
                                            lease_seconds=self.settings.job_lease_seconds)
        if job_id is not None:
            validate_job(self.settings, self.db, job_id=job_id, worker_id=self.worker_id)
        return job_id is not None

    def _validate_forever(self) -> None:
        self._loop(self._validate_next, "validator")

    # ---- one job -------------------------------------------------------------------------------

    def _event(self, job_id: str, message: str, **kw) -> None:
        with self.db.session() as s:
            repo.add_event(s, job_id=job_id, message=message, **kw)

    def _spec_path(self, job_id: str) -> tuple[Path, dict]:
        from tenfold.models.registry import resolve_base_model

        with self.db.session() as s:
            job = repo.get_job(s, job_id=job_id, organization_id=None)
            spec = dict(job.spec)
            attempt = job.attempt
            steps = [c.step for c in repo.list_checkpoints(s, job_id=job_id)]
        if not Path(spec["training_file"]).exists():
            raise FileNotFoundError(f"training file {job.training_file} was deleted before the job ran")
        spec["base_model_path"] = str(resolve_base_model(spec["base_model"], models_dir=self.settings.models_dir))
        spec["torch_threads"] = self.settings.torch_threads
        spec["dtype"] = self.settings.train_dtype
        spec["format_cache"] = str(self.settings.format_cache_file)
        wanted = int(spec.get("n_procs") or 1)
        spec["n_procs"] = min(wanted, self.max_procs())
        if spec["n_procs"] < wanted:
            self._event(job_id, f"n_procs {wanted} is above this worker's limit; running on {spec['n_procs']} "
                                "processes (TENFOLD_WORKER_MAX_PROCS).", level="warn")
        if spec["n_procs"] > 1:
            cores = self.settings.torch_threads or os.cpu_count() or 1
            spec["torch_threads"] = max(1, cores // spec["n_procs"])  # the machine's cores shared by the ranks
        if self.settings.train_micro_batch_tokens is not None:
            spec["micro_batch_tokens"] = self.settings.train_micro_batch_tokens
        if attempt > 1 and steps:
            resume = Path(spec["output_dir"]) / f"step-{max(steps)}"
            if resume.exists():
                spec["resume_from"] = str(resume)
                self._event(job_id, f"Resuming from checkpoint step {max(steps)} (attempt {attempt}).")
        out = Path(spec["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        path = out / "spec.json"
        path.write_text(json.dumps(spec, indent=2))
        return path, spec

    def _child_env(self, job_id: str, spec: dict) -> dict[str, str]:
        """The trainer's environment: this process's, plus the W&B key sent with the job's request (if this
        process holds one), which overrides a ``WANDB_API_KEY`` of the worker's own environment."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        if not spec.get("wandb"):
            return env
        key = wandb_keys.get(job_id)
        if key is not None:
            env["WANDB_API_KEY"] = key
            self._event(job_id, "W&B: the API key sent with the job is handed to the trainer's environment "
                                "(it is never stored).")
        elif env.get("WANDB_API_KEY"):
            self._event(job_id, "W&B: using WANDB_API_KEY from the worker's environment.")
        return env

    def max_procs(self) -> int:
        """The most processes one job may use here: the setting, else the GPUs, else the CPU cores."""
        if self.settings.worker_max_procs > 0:
            return self.settings.worker_max_procs
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else (os.cpu_count() or 1)

    def command(self, spec_path: Path, spec: dict) -> list[str]:
        """``python -m tenfold.training.main`` for one process; torchrun of ``tenfold.training.ddp`` for more
        (a free rendezvous port on this machine; gloo on CPU, NCCL on GPUs)."""
        n = int(spec.get("n_procs") or 1)
        if n <= 1:
            return [sys.executable, "-m", "tenfold.training.main", "--spec", str(spec_path)]
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                "-m", "tenfold.training.ddp", "--spec", str(spec_path)]

    def run_job(self, job_id: str) -> None:
        try:
            spec_path, spec = self._spec_path(job_id)
        except Exception as e:
            self._fail(job_id, f"Could not start training: {e}", user_error=isinstance(e, FileNotFoundError))
            return
        procs = int(spec.get("n_procs") or 1)
        self._event(job_id, "Training started." if procs == 1 else f"Training started on {procs} processes.",
                    data={"status": "running", "n_procs": procs})
        log_path = spec_path.parent / "train.log"
        env = self._child_env(job_id, spec)
        if procs > 1:
            env["OMP_NUM_THREADS"] = str(spec["torch_threads"])
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(self.command(spec_path, spec), stdout=subprocess.PIPE, stderr=log_file, env=env,
                                    start_new_session=True, preexec_fn=_die_with_parent)
            self._proc = proc
            try:
                self._supervise(job_id, proc, log_path)
            finally:
                self._proc = None
                if proc.poll() is None:
                    self._terminate(proc)

    def _supervise(self, job_id: str, proc: subprocess.Popen, log_path: Path) -> None:
        lines: queue_mod.Queue = queue_mod.Queue()

        def pump() -> None:
            for raw in proc.stdout:
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        last_beat, outcome = 0.0, None
        while True:
            now = time.monotonic()
            if now - last_beat >= self.settings.job_heartbeat_seconds:
                last_beat = now
                if not lifecycle.heartbeat(self.db, job_id=job_id, worker_id=self.worker_id):
                    self._terminate(proc)
                    self._event(job_id, "Training process stopped (job cancelled).")
                    return
            if self._stop.is_set():
                self._terminate(proc)
                lifecycle.release(self.db, job_id=job_id, worker_id=self.worker_id)
                return
            try:
                raw = lines.get(timeout=0.5)
            except queue_mod.Empty:
                continue
            if raw is None:
                break
            try:
                ev = json.loads(raw)
            except ValueError:
                log.warning("job %s: non-JSON line from trainer: %r", job_id, raw[:200])
                continue
            outcome = self._handle(job_id, ev) or outcome
        code = proc.wait()
        if outcome in ("done", "error", "cancelled"):
            return
        tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
        self._fail(job_id, f"Training process exited with code {code} without finishing. Last log lines:\n{tail}",
                   user_error=False)

    def _handle(self, job_id: str, ev: dict) -> str | None:
        kind = ev.get("type")
        with self.db.session() as s:
            if kind == "started":
                repo.update_job(s, job_id=job_id, total_steps=ev.get("total_steps"))
                repo.add_event(s, job_id=job_id, message=(
                    f"Training {ev.get('n_examples')} examples for {ev.get('epochs')} epochs: "
                    f"{ev.get('total_steps')} steps, {ev.get('trainable_params')} trainable parameters."),
                    data=ev)
            elif kind == "metrics":
                repo.update_job(s, job_id=job_id, step=ev["step"], total_steps=ev.get("total_steps"),
                                last_loss=ev.get("loss"), eta_seconds=ev.get("eta_s"), heartbeat_at=time.time())
                data = metrics.event_data(ev)
                valid = f", validation loss={ev['valid_loss']:.4f}" if ev.get("valid_loss") is not None else ""
                repo.add_event(s, job_id=job_id, type="metrics", data=data,
                               message=f"Step {ev['step']}/{ev.get('total_steps')}: training loss="
                                       f"{ev.get('loss'):.4f}{valid}")
            elif kind == "checkpoint":
                from tenfold.training.checkpoints import adapter_digest

                step = int(ev["step"])
                repo.add_checkpoint(s, job_id=job_id, step=step, path=ev["path"],
                                    digest=adapter_digest(Path(ev["path"])), metrics=ev.get("metrics"))
                repo.add_event(s, job_id=job_id, data={"step": step, "checkpoint": f"{job_id}/step-{step}"},
                               message=f"Checkpoint saved at step {step}: deploy it with "
                                       f"`tenfold deploy {job_id}/step-{step}`.")
            elif kind == "cancelled":
                repo.add_event(s, job_id=job_id, message=f"Training stopped at step {ev.get('step')}.")
                return "cancelled"
            elif kind in ("warning", "info"):
                repo.add_event(s, job_id=job_id, level="warn" if kind == "warning" else "info",
                               message=str(ev.get("message")), data={k: v for k, v in ev.items() if k != "type"})
            elif kind == "done":
                from tenfold.training.checkpoints import adapter_digest

                path, tokens = ev["path"], int(ev.get("trained_tokens") or 0)
                evaluated = int(ev.get("evaluated_tokens") or 0)
                digest = adapter_digest(Path(path))
                evals = f", {evaluated} validation tokens evaluated" if evaluated else ""
                # The usage row is written with the move to ``succeeded`` (which happens once), keyed by the job;
                # it bills trained + evaluated tokens (seed 002: n_epochs x training + n_evals x validation).
                if lifecycle.succeed(s, job_id=job_id, data=ev, message=(
                        f"Job succeeded: {ev.get('steps')} steps, {ev.get('trained_tokens')} tokens trained{evals}. "
                        f"Deploy it with `tenfold deploy {job_id}`."), final_adapter_path=path,
                        final_adapter_digest=digest, trained_tokens=ev.get("trained_tokens"),
                        step=ev.get("steps", 0), last_loss=ev.get("train_loss")):
                    add_training_usage(s, self.settings, job=repo.get_job(s, job_id=job_id, organization_id=None),
                                       trained_tokens=tokens + evaluated, digest=digest)
                wandb_keys.drop(job_id)  # a succeeded job is never resumed: forget its key
                return "done"
            elif kind == "error":
                code = "invalid_training_file" if ev.get("user_error") else "training_error"
                lifecycle.fail(s, job_id=job_id, code=code, message=str(ev.get("message")))
                return "error"
        return None

    def _fail(self, job_id: str, message: str, *, user_error: bool) -> None:
        code = "invalid_training_file" if user_error else "training_error"
        with self.db.session() as s:
            lifecycle.fail(s, job_id=job_id, code=code, message=message)

    @staticmethod
    def _terminate(proc: subprocess.Popen) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
