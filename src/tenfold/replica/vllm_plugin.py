"""tenfold's plugin for vLLM: a LoRA resolver that fetches a deployment's adapters from the tenfold api by
content digest, for vLLM replicas on machines that do not share the api's disk.

vLLM loads a LoRA adapter from a folder on its own machine. When a request names an adapter it does not hold
and runtime LoRA updating is on, vLLM asks its registered resolvers for one; this resolver answers for names
that are content digests (``sha256:<hex>``, the names tenfold loads adapters under) by fetching the adapter
with ``tenfold.replica.fetch`` (the deployment's secret, never an organization's key; digest verified; cached
locally), so each adapter crosses the network once per machine.

Installed into vLLM's environment as the ``vllm.general_plugins`` entry point ``tenfold``
(``pip install --no-deps tenfold zstandard`` there; ``make vllm`` does it). It registers itself only in a
replica started by tenfold with ``TENFOLD_API_URL``, ``TENFOLD_REPLICA_SECRET`` and ``TENFOLD_REPLICA_CACHE``
set (``tenfold.deployments.vllm.environment`` sets them when replicas do not share the api's disk), so it is
inert in any other vLLM. Owns: the resolver and its registration. Does not own: the download and digest check
(``tenfold.replica.fetch``), starting vLLM (``tenfold.deployments.vllm``).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def make_resolver(api_url: str, secret: str, cache_dir: Path):
    """A vLLM ``LoRAResolver`` fetching adapters named by content digest from the tenfold api."""
    from vllm.logger import init_logger
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver

    from tenfold.engine.types import AdapterError
    from tenfold.replica.fetch import fetch_adapter

    log = init_logger("vllm.tenfold")  # vLLM's handlers: the lines land in the replica's log

    class TenfoldResolver(LoRAResolver):
        async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
            if not DIGEST.match(lora_name):
                return None  # not a name tenfold gives adapters: another resolver's, or nobody's
            try:
                path = await asyncio.to_thread(fetch_adapter, api_url, secret, lora_name, cache_dir)
            except AdapterError as e:
                log.warning("tenfold: adapter %s could not be fetched: %s", lora_name, e)
                return None
            # vLLM replaces the id with its own counter; the name is what requests use.
            return LoRARequest(lora_name=lora_name, lora_int_id=int(lora_name[7:15], 16) or 1,
                               lora_path=str(path))

    return TenfoldResolver()


def register() -> None:
    """vLLM's entry point: register the resolver when this vLLM is a tenfold replica that fetches adapters."""
    api_url = os.environ.get("TENFOLD_API_URL", "")
    secret = os.environ.get("TENFOLD_REPLICA_SECRET", "")
    cache = os.environ.get("TENFOLD_REPLICA_CACHE", "")
    if not (api_url and secret and cache):
        return
    from vllm.lora.resolver import LoRAResolverRegistry

    if "tenfold" not in LoRAResolverRegistry.get_supported_resolvers():
        LoRAResolverRegistry.register_resolver("tenfold", make_resolver(api_url, secret, Path(cache) / "adapters"))
