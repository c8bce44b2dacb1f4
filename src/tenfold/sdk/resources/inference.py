"""``client.chat.completions.create`` (``POST /v1/chat/completions``) and ``client.completions.create``
(``POST /v1/completions``: a raw prompt, no chat template), the OpenAI contracts.

Owns: the arguments of both, turning them into the request body (only the fields given, so the server's
defaults apply to the rest; ``extra_body`` added last) and the ``X-Tenfold-Expected-Checkpoint`` header
(stripped, as the server compares it; an empty string is sent and means "no checkpoint may serve").
A call returns a ``ChatCompletion`` / ``Completion``, or with ``stream=True`` a ``Stream`` of
``ChatCompletionChunk`` / ``Completion`` (``AsyncStream`` with ``AsyncTenfold``) whose ``checkpoint`` is the
``X-Tenfold-Checkpoint`` header; ``with_raw_response.create(...)`` gives the headers of either.
Does not own: generation (the server).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tenfold.sdk._request import EXPECTED_CHECKPOINT_HEADER, Resource, compact
from tenfold.sdk._streaming import Stream
from tenfold.types.chat import ChatCompletion, ChatCompletionChunk
from tenfold.types.completions import Completion


def checkpoint_headers(expected_checkpoint: str | None, extra_headers: Mapping[str, str] | None
                       ) -> dict[str, str]:
    headers = dict(extra_headers or {})
    if expected_checkpoint is not None:  # "" is meaningful: require that no checkpoint serves
        headers[EXPECTED_CHECKPOINT_HEADER] = expected_checkpoint.strip()
    return headers


class _Inference(Resource):
    def _create(self, path: str, cast_to: Any, chunk_to: Any, fields: Mapping[str, Any], *,
                expected_checkpoint: str | None, extra_headers: Mapping[str, str] | None,
                extra_body: Mapping[str, Any] | None, timeout_seconds: float | None) -> Any:
        body = {**compact(fields), **(extra_body or {})}
        stream = bool(body.get("stream"))
        return self._call("POST", path, chunk_to if stream else cast_to, json=body, stream=stream,
                          headers=checkpoint_headers(expected_checkpoint, extra_headers),
                          timeout_seconds=timeout_seconds)


class ChatCompletions(_Inference):
    def create(self, *, model: str, messages: Iterable[Mapping[str, Any]], max_tokens: int | None = None,
               max_completion_tokens: int | None = None, temperature: float | None = None,
               top_p: float | None = None, stop: str | list[str] | None = None, seed: int | None = None,
               n: int | None = None, logprobs: bool | None = None, top_logprobs: int | None = None,
               presence_penalty: float | None = None, frequency_penalty: float | None = None,
               stream: bool | None = None, stream_options: Mapping[str, Any] | None = None,
               user: str | None = None, expected_checkpoint: str | None = None,
               extra_headers: Mapping[str, str] | None = None, extra_body: Mapping[str, Any] | None = None,
               timeout_seconds: float | None = None) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """Answer ``messages`` with ``model``: a base model, a deployed job id, or ``<model>#<deployment>``.

        ``expected_checkpoint`` pins what must serve (409 ``ConflictError`` naming the live checkpoint
        otherwise; ``""`` requires the final adapter). Arguments left None take the server's defaults;
        ``extra_body`` adds fields the server accepts beyond these (``top_k``, ``ignore_eos``, …).
        """
        fields = {"model": model, "messages": [dict(m) for m in messages], "max_tokens": max_tokens,
                  "max_completion_tokens": max_completion_tokens, "temperature": temperature, "top_p": top_p,
                  "stop": stop, "seed": seed, "n": n, "logprobs": logprobs, "top_logprobs": top_logprobs,
                  "presence_penalty": presence_penalty, "frequency_penalty": frequency_penalty,
                  "stream": stream or None, "stream_options": dict(stream_options) if stream_options else None,
                  "user": user}
        return self._create("/chat/completions", ChatCompletion, ChatCompletionChunk, fields,
                            expected_checkpoint=expected_checkpoint, extra_headers=extra_headers,
                            extra_body=extra_body, timeout_seconds=timeout_seconds)


class Chat(Resource):
    def __init__(self, client: Any, *, raw: bool = False) -> None:
        super().__init__(client, raw=raw)
        self.completions = ChatCompletions(client, raw=raw)


class Completions(_Inference):
    def create(self, *, model: str, prompt: str | list[str] | list[int], max_tokens: int | None = None,
               temperature: float | None = None, top_p: float | None = None, stop: str | list[str] | None = None,
               seed: int | None = None, n: int | None = None, logprobs: int | None = None, echo: bool | None = None,
               suffix: str | None = None, presence_penalty: float | None = None,
               frequency_penalty: float | None = None, stream: bool | None = None,
               stream_options: Mapping[str, Any] | None = None, user: str | None = None,
               expected_checkpoint: str | None = None, extra_headers: Mapping[str, str] | None = None,
               extra_body: Mapping[str, Any] | None = None,
               timeout_seconds: float | None = None) -> Completion | Stream[Completion]:
        """Continue ``prompt`` (a string, or token ids) with ``model``; ``logprobs=N`` returns the top N
        alternatives per token. ``expected_checkpoint`` and ``extra_body`` as in chat completions."""
        fields = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                  "top_p": top_p, "stop": stop, "seed": seed, "n": n, "logprobs": logprobs, "echo": echo,
                  "suffix": suffix, "presence_penalty": presence_penalty, "frequency_penalty": frequency_penalty,
                  "stream": stream or None, "stream_options": dict(stream_options) if stream_options else None,
                  "user": user}
        return self._create("/completions", Completion, Completion, fields, expected_checkpoint=expected_checkpoint,
                            extra_headers=extra_headers, extra_body=extra_body, timeout_seconds=timeout_seconds)


__all__ = ["Chat", "ChatCompletions", "Completions", "checkpoint_headers"]
