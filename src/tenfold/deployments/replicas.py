"""Replica backends: what starts and stops a deployment's engine processes.

Owns: ``ReplicaSpec`` (what to run), ``ReplicaHandle`` (where it runs), the ``ReplicaBackend`` interface
the controller uses, and ``LocalProcessBackend``, the default: one ``tenfold serve --role engine`` process
(or vLLM's OpenAI server, ``tenfold.deployments.vllm``) per replica on this machine, on a free loopback port,
in its own session (so a replica outlives an api that crashes, and the restarted api adopts it; a kill takes
its whole process group, vLLM's engine-core children included), logging to
``$TENFOLD_HOME/replicas/<id>.log``. Another backend (Ray actors) implements the same four methods; the
controller, router and autoscaler do not change. Does not own: deciding how many replicas run (the
controller) or health.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tenfold.config import Settings
from tenfold.deployments.profiles import engine_device


@dataclass(frozen=True)
class ReplicaSpec:
    deployment_id: str
    replica_id: str
    base_model: str
    hardware_profile: str
    engine: str  # "tenfold" | "vllm"
    secret: str


@dataclass(frozen=True)
class ReplicaHandle:
    replica_id: str
    pid: int | None
    endpoint: str  # http://host:port
    placement: str | None = None  # where it runs, as `tenfold deployments get` shows it


class ReplicaBackend(Protocol):
    def start(self, spec: ReplicaSpec) -> ReplicaHandle:
        """Launch the replica and return at once; the controller waits for its health check."""

    def stop(self, handle: ReplicaHandle, *, grace: float = 10.0) -> None:
        """Ask the replica to finish its requests and exit; kill it after ``grace`` seconds."""

    def alive(self, handle: ReplicaHandle) -> bool:
        """Whether its process still exists (a replica found dead is replaced)."""

    def log_tail(self, replica_id: str, lines: int = 15) -> str:
        """The last lines the replica wrote (for a failed start's reason)."""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def replica_command(settings: Settings, spec: ReplicaSpec, *, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one replica listening on ``host:port`` (on whichever machine runs
    it: the local backend here, a Ray actor on its node)."""
    s = settings
    threads = s.replica_torch_threads or s.torch_threads
    if spec.engine == "vllm":
        from tenfold.deployments import vllm
        from tenfold.models.registry import resolve_base_model

        gpu = engine_device(spec.hardware_profile) == "cuda"
        path = resolve_base_model(spec.base_model, models_dir=s.models_dir)  # fetched when it was created
        cmd = vllm.command(s, model_path=path, served_name=spec.base_model, host=host, port=port, gpu=gpu)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TENFOLD_", "VLLM_"))}
        env.update(vllm.environment(s, secret=spec.secret, threads=threads, gpu=gpu))
        return cmd, env
    if spec.engine != "tenfold":
        raise ValueError(f"unknown replica engine {spec.engine!r}")
    cmd = [sys.executable, "-m", "tenfold.cli.main", "serve", "--role", "engine", "--host", host, "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENFOLD_")}
    env.update({
        "TENFOLD_HOME": str(s.home), "TENFOLD_MODEL_CACHE": str(s.models_dir),
        "TENFOLD_BASE_MODEL": spec.base_model, "TENFOLD_REPLICA_ID": spec.replica_id,
        "TENFOLD_REPLICA_SECRET": spec.secret, "TENFOLD_KV_CACHE_BYTES": str(s.replica_kv_cache_bytes),
        "TENFOLD_TORCH_THREADS": str(threads),
        "TENFOLD_ENGINE_DEVICE": engine_device(spec.hardware_profile), "TENFOLD_LORA_DTYPE": s.lora_dtype,
        "TENFOLD_ENGINE_DTYPE": s.engine_dtype,
        "TENFOLD_REPLICA_ORPHAN_SECONDS": str(s.replica_orphan_seconds),
        "TENFOLD_MAX_NUM_SEQS": str(s.max_num_seqs), "TENFOLD_MAX_BATCHED_TOKENS": str(s.max_batched_tokens),
        "TENFOLD_MAX_RESIDENT_ADAPTERS": str(s.max_resident_adapters), "TENFOLD_HOST_ADAPTERS": str(s.host_adapters),
        "TENFOLD_MAX_WAITING_REQUESTS": str(s.max_waiting_requests),
        "TENFOLD_API_URL": s.replica_api_url,
        "TENFOLD_REPLICA_CACHE": str(s.replica_cache_dir),
        "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
    })
    return cmd, env


def launch(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start a replica process in its own session (its group is it and its children), logging to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def terminate(pid: int, alive: Callable[[], bool], *, grace: float) -> None:
    """SIGTERM the replica, then SIGKILL its process group after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive():
        time.sleep(0.05)
    if alive():
        try:
            os.killpg(pid, signal.SIGKILL)  # its own session: the group is the replica and its children
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class LocalProcessBackend:
    """Replicas as child processes of this machine (see the module docstring)."""

    placement = "local process"

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1") -> None:
        self.settings = settings
        self.host = host
        self.log_dir = settings.home / "replicas"
        self._children: dict[int, subprocess.Popen] = {}

    def start(self, spec: ReplicaSpec) -> ReplicaHandle:
        port = _free_port(self.host)
        cmd, env = replica_command(self.settings, spec, host=self.host, port=port)
        proc = launch(cmd, env, self.log_dir / f"{spec.replica_id}.log")
        self._children[proc.pid] = proc
        return ReplicaHandle(spec.replica_id, proc.pid, f"http://{self.host}:{port}", self.placement)

    def alive(self, handle: ReplicaHandle) -> bool:
        if handle.pid is None:
            return False
        child = self._children.get(handle.pid)
        if child is not None:
            return child.poll() is None
        try:  # adopted from an earlier api process: not our child, so ask the kernel
            os.kill(handle.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return not _is_zombie(handle.pid)

    def stop(self, handle: ReplicaHandle, *, grace: float = 10.0) -> None:
        if handle.pid is None or not self.alive(handle):
            self._reap(handle.pid)
            return
        terminate(handle.pid, lambda: self.alive(handle), grace=grace)
        self._reap(handle.pid)

    def _reap(self, pid: int | None) -> None:
        child = self._children.pop(pid, None) if pid is not None else None
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, replica_id: str, lines: int = 15) -> str:
        return tail(self.log_dir / f"{replica_id}.log", lines)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False
