"""An ``Engine`` in another process, reached over HTTP: a replica of a dedicated deployment.

Owns: speaking the replica protocol, which is the OpenAI completions API as vLLM's server extends it, so a
tenfold replica (``tenfold serve --role engine``) and ``vllm serve --enable-lora`` are interchangeable:
prompts as token ids to ``POST /v1/completions`` (streamed, usage included), ``cache_salt`` for the
prefix-cache namespace (the organization, and for vLLM the adapter's digest with it), ``priority``, adapters
as LoRA names loaded with ``POST /v1/load_lora_adapter``;
every call carries the deployment's secret as a bearer token. Turning the stream back into
``GenerationDelta``s, and failures into engine errors: a 400 is ``EngineError``, a 429 ``EngineOverloaded``,
a replica that cannot be reached or dies mid-request ``ReplicaUnavailable`` (retryable, never a hang).
Does not own: choosing a replica (the deployment's router) or starting one (the replica backend).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tenfold.engine.types import (
    AdapterError,
    AdapterRef,
    Constraint,
    EngineError,
    EngineOverloaded,
    GenerationDelta,
    GenerationRequest,
    TokenLogprob,
)
from tenfold.errors import Unavailable


class ReplicaUnavailable(Unavailable):
    """The replica could not be reached or stopped answering; the request may be retried."""

    default_code = "replica_unavailable"


def structured_outputs(constraint: Constraint | None) -> dict[str, Any] | None:
    """A constraint as vLLM's ``structured_outputs`` request field (``json``: a schema; ``grammar``: Lark)."""
    if constraint is None:
        return None
    if constraint.kind == "json_schema":
        return {"json": json.loads(constraint.value)}
    return {"grammar": constraint.value}


def constraint_of(structured: dict[str, Any] | None) -> Constraint | None:
    """The inverse of ``structured_outputs`` (what a replica receives)."""
    if not structured:
        return None
    if "json" in structured:
        schema = structured["json"]
        return Constraint("json_schema", schema if isinstance(schema, str) else json.dumps(schema))
    if "grammar" in structured:
        return Constraint("lark", structured["grammar"])
    raise EngineError(f"structured_outputs supports json or grammar, got {sorted(structured)}")


class RemoteEngine:
    """One replica at ``endpoint`` (``http://host:port``) serving ``base_model``."""

    def __init__(self, endpoint: str, base_model: str, *, secret: str, max_context: int,
                 client: httpx.AsyncClient | None = None, retry_after: float = 1.0, engine: str = "tenfold",
                 share_disk: bool = True) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.engine = engine  # "tenfold" or "vllm": what answers at the endpoint
        self.share_disk = share_disk  # False: send no path; the replica fetches adapters from the api by digest
        self.base_model = base_model
        self.max_context = max_context
        self.retry_after = retry_after
        self._headers = {"Authorization": f"Bearer {secret}"}
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))

    @staticmethod
    def adapter_name(adapter: AdapterRef) -> str:
        """The LoRA name a replica knows an adapter by: its content digest."""
        return adapter.digest

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._client.aclose()

    def _gone(self, exc: Exception) -> ReplicaUnavailable:
        return ReplicaUnavailable(f"The replica at {self.endpoint} is unavailable ({type(exc).__name__}); retry the "
                                  "request, another replica or a restarted one will take it.",
                                  retry_after=self.retry_after)

    async def load_adapter(self, adapter: AdapterRef) -> None:
        if self.engine == "vllm" and not self.share_disk:
            return await self._resolve_on_vllm(adapter)
        try:
            r = await self._client.post(self.endpoint + "/v1/load_lora_adapter", headers=self._headers,
                                         json={"lora_name": self.adapter_name(adapter),
                                               "lora_path": str(adapter.path) if self.share_disk else ""})
        except httpx.TransportError as exc:
            raise self._gone(exc) from None
        if r.status_code >= 400:
            message = _message(r)
            if "already" in message and "loaded" in message:  # vLLM: another request loaded it first
                return
            raise AdapterError(message)

    async def _resolve_on_vllm(self, adapter: AdapterRef) -> None:
        """Have a vLLM replica without the api's disk load ``adapter``: vLLM's load route only takes a path on
        its machine, but a request naming an adapter it lacks makes it ask its LoRA resolvers, and tenfold's
        plugin there fetches the adapter by digest. One generated token does that and reports a failure."""
        name = self.adapter_name(adapter)
        try:
            r = await self._client.post(self.endpoint + "/v1/completions", headers=self._headers,
                                         json={"model": name, "prompt": [0], "max_tokens": 1, "priority": -1})
        except httpx.TransportError as exc:
            raise self._gone(exc) from None
        if r.status_code >= 400:
            raise AdapterError(f"the vLLM replica at {self.endpoint} could not load adapter {name} (its plugin "
                               f"fetches it from the api; see the replica's log): {_message(r)}")

    async def unload_adapter(self, name: str) -> None:
        """Forget the adapter ``name`` on the replica (one it does not hold is not an error)."""
        try:
            r = await self._client.post(self.endpoint + "/v1/unload_lora_adapter", headers=self._headers,
                                         json={"lora_name": name})
        except httpx.TransportError as exc:
            raise self._gone(exc) from None
        if r.status_code >= 400 and r.status_code not in (400, 404):
            raise AdapterError(_message(r))

    def cache_salt(self, request: GenerationRequest) -> str | None:
        """The prefix-cache namespace a request runs in, set here from the organization (never the client). A
        tenfold replica combines it with the adapter's digest itself; for vLLM the salt carries both, so no
        cache hit crosses an organization or an adapter whatever vLLM keys its blocks by."""
        if not request.organization:
            return None
        if self.engine == "tenfold":
            return request.organization
        digest = request.adapter.digest if request.adapter else "base"
        return hashlib.sha256(f"{request.organization}|{digest}".encode()).hexdigest()[:32]

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.adapter_name(request.adapter) if request.adapter else self.base_model,
            "prompt": list(request.prompt_token_ids), "max_tokens": s.max_tokens, "temperature": s.temperature,
            "top_p": s.top_p, "top_k": s.top_k, "seed": s.seed, "stop": list(s.stop) or None,
            "stop_token_ids": list(s.stop_token_ids) or None, "ignore_eos": s.ignore_eos,
            "presence_penalty": s.presence_penalty, "frequency_penalty": s.frequency_penalty,
            "logprobs": s.logprobs, "stream": True, "stream_options": {"include_usage": True},
            "cache_salt": self.cache_salt(request), "priority": request.priority,
            "structured_outputs": structured_outputs(request.constraint),
        }
        return {k: v for k, v in body.items() if v is not None}

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        if len(request.prompt_token_ids) + request.sampling.max_tokens > self.max_context:
            raise EngineError(f"this model's maximum context length is {self.max_context} tokens, but the request "
                              f"needs {len(request.prompt_token_ids) + request.sampling.max_tokens}")
        return self._stream(request)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        finish: str | None = None
        try:
            async with self._client.stream("POST", self.endpoint + "/v1/completions", headers=self._headers,
                                           json=self._body(request)) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise _error(r)
                async for payload in _sse(r):
                    usage = payload.get("usage")
                    for choice in payload.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        text, lps = choice.get("text") or "", _logprobs(choice.get("logprobs"))
                        if text or lps:
                            yield GenerationDelta(text=text, logprobs=lps)
                    if usage:
                        details = usage.get("prompt_tokens_details") or {}
                        yield GenerationDelta(finish_reason=finish or "stop", prompt_tokens=usage["prompt_tokens"],
                                              cached_tokens=details.get("cached_tokens") or 0,
                                              completion_tokens=usage["completion_tokens"])
                        return
        except httpx.TransportError as exc:
            raise self._gone(exc) from None
        raise ReplicaUnavailable(f"The replica at {self.endpoint} ended the stream without finishing it; retry the "
                                 "request.", retry_after=self.retry_after)


async def _sse(response: httpx.Response) -> AsyncIterator[dict]:
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        payload = json.loads(data)
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise EngineError(str(payload["error"].get("message") or "the replica failed this request"))
        yield payload


def _logprobs(lp: dict | None) -> list[TokenLogprob] | None:
    """Legacy completions logprobs → entries (token text; ids are the replica's and not needed here)."""
    if not lp or not lp.get("tokens"):
        return None
    out = []
    for i, token in enumerate(lp["tokens"]):
        tops = (lp.get("top_logprobs") or [None] * len(lp["tokens"]))[i] or {}
        out.append(TokenLogprob(token_id=-1, logprob=float(lp["token_logprobs"][i]),
                                top=tuple((-1, float(v)) for v in tops.values()), text=token,
                                top_text=tuple(tops.keys())))
    return out


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return r.text[:500] or f"HTTP {r.status_code}"


def _error(r: httpx.Response) -> Exception:
    if r.status_code == 429:
        return EngineOverloaded(_message(r), retry_after=float(r.headers.get("retry-after") or 1))
    if r.status_code in (400, 404, 413, 422):
        return EngineError(_message(r))
    return ReplicaUnavailable(f"The replica answered {r.status_code}: {_message(r)}", retry_after=1.0)
