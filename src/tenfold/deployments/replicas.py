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


class LocalProcessBackend:
    """Replicas as child processes of this machine (see the module docstring)."""

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1") -> None:
        self.settings = settings
        self.host = host
        self.log_dir = settings.home / "replicas"
        self._children: dict[int, subprocess.Popen] = {}

    def _env(self, spec: ReplicaSpec) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENFOLD_")}
        env.update({
            "TENFOLD_HOME": str(s.home), "TENFOLD_MODEL_CACHE": str(s.models_dir),
            "TENFOLD_BASE_MODEL": spec.base_model, "TENFOLD_REPLICA_ID": spec.replica_id,
            "TENFOLD_REPLICA_SECRET": spec.secret, "TENFOLD_KV_CACHE_BYTES": str(s.replica_kv_cache_bytes),
            "TENFOLD_TORCH_THREADS": str(s.replica_torch_threads or s.torch_threads),
            "TENFOLD_ENGINE_DEVICE": engine_device(spec.hardware_profile), "TENFOLD_LORA_DTYPE": s.lora_dtype,
            "TENFOLD_REPLICA_ORPHAN_SECONDS": str(s.replica_orphan_seconds),
            "TENFOLD_MAX_NUM_SEQS": str(s.max_num_seqs), "TENFOLD_MAX_BATCHED_TOKENS": str(s.max_batched_tokens),
            "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
        })
        return env

    def _vllm(self, spec: ReplicaSpec, port: int) -> tuple[list[str], dict[str, str]]:
        from tenfold.deployments import vllm
        from tenfold.models.registry import resolve_base_model

        s = self.settings
        gpu = engine_device(spec.hardware_profile) == "cuda"
        path = resolve_base_model(spec.base_model, models_dir=s.models_dir)  # fetched when it was created
        cmd = vllm.command(s, model_path=path, served_name=spec.base_model, host=self.host, port=port, gpu=gpu)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TENFOLD_", "VLLM_"))}
        env.update(vllm.environment(s, secret=spec.secret, threads=s.replica_torch_threads or s.torch_threads,
                                    gpu=gpu))
        return cmd, env

    def start(self, spec: ReplicaSpec) -> ReplicaHandle:
        port = _free_port(self.host)
        if spec.engine == "vllm":
            cmd, env = self._vllm(spec, port)
        elif spec.engine == "tenfold":
            cmd = [sys.executable, "-m", "tenfold.cli.main", "serve", "--role", "engine", "--host", self.host,
                   "--port", str(port)]
            env = self._env(spec)
        else:
            raise ValueError(f"unknown replica engine {spec.engine!r}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{spec.replica_id}.log", "ab") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._children[proc.pid] = proc
        return ReplicaHandle(spec.replica_id, proc.pid, f"http://{self.host}:{port}")

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
        try:
            os.kill(handle.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.alive(handle):
            time.sleep(0.05)
        if self.alive(handle):
            try:
                os.killpg(handle.pid, signal.SIGKILL)  # its own session: the group is the replica and its children
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(handle.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._reap(handle.pid)

    def _reap(self, pid: int | None) -> None:
        child = self._children.pop(pid, None) if pid is not None else None
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, replica_id: str, lines: int = 15) -> str:
        path = self.log_dir / f"{replica_id}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False
