"""The hosted-LoRA helper: a small client for calling a served adapter (or the base model) without the rest
of the SDK's surface, and one-shot module functions.

``HostedLoraClient(hosting_url=..., api_key=None, timeout_seconds=60.0)`` has ``chat_completion`` (``POST
/v1/chat/completions``) and ``generate`` (``POST /v1/completions``, a raw prompt); ``chat_completion_with_lora``
and ``generate_with_lora`` make a client for one call and close it. Every call takes ``timeout_seconds``,
a limit for that call only; the client-wide timeout set at construction stays as it was. Calls return the
SDK's typed ``ChatCompletion`` / ``Completion`` (a ``Stream`` of chunks with ``stream=True``) and raise the
SDK's errors (``APITimeoutError`` when the limit passes, ``NotFoundError`` for a model that is not deployed, …).

Owns: the helper's arguments (defaults ``max_tokens=512``, ``temperature=0.0``, as ``tenfold chat``) and
routing of extra keyword arguments: those ``create`` takes (``top_p``, ``stop``, ``seed``,
``expected_checkpoint``, ``extra_headers``, ``stream``, …) are passed as they are, any other
(``ignore_eos``, ``top_k``, …) goes into the request body. Does not own: requests, retries, credentials or
parsing (``Tenfold``, which it wraps: ``hosting_url`` with or without ``/v1``, the API key from the argument,
``TENFOLD_API_KEY`` or ``tenfold login``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from tenfold.sdk._base_client import DEFAULT_TIMEOUT
from tenfold.sdk._streaming import Stream
from tenfold.sdk.client import Tenfold
from tenfold.sdk.resources.inference import ChatCompletions, Completions
from tenfold.types.chat import ChatCompletion, ChatCompletionChunk
from tenfold.types.completions import Completion

DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.0
_CHAT_ARGS = frozenset(inspect.signature(ChatCompletions.create).parameters) - {"self"}
_COMPLETION_ARGS = frozenset(inspect.signature(Completions.create).parameters) - {"self"}


def _split(extra: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """``create``'s keyword arguments from ``extra``: its own names as they are, the rest in ``extra_body``."""
    kwargs = {k: v for k, v in extra.items() if k in known}
    body = {k: v for k, v in extra.items() if k not in known}
    if body:
        kwargs["extra_body"] = {**body, **dict(kwargs.get("extra_body") or {})}
    return kwargs


def _check_timeout(value: float | None, name: str) -> float | None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return value


class HostedLoraClient:
    """Chat with or continue text from a model served by a tenfold server: a deployed adapter (its job id,
    ``<job id>#<deployment>``) or the base model.

    ``hosting_url`` is the server (``https://host`` or ``https://host/v1``; default as ``Tenfold``:
    ``TENFOLD_BASE_URL``, then ``tenfold login``'s, then http://127.0.0.1:8000); ``api_key`` defaults to
    ``TENFOLD_API_KEY``, then ``tenfold login``'s. ``timeout_seconds`` is the limit of each call unless the
    call gives its own. ``client`` is the underlying ``Tenfold`` for anything else. Close it with ``close()``
    or use it as a context manager.
    """

    def __init__(self, hosting_url: str | None = None, api_key: str | None = None,
                 timeout_seconds: float = DEFAULT_TIMEOUT, *, max_retries: int = 2) -> None:
        _check_timeout(timeout_seconds, "timeout_seconds")
        self.client = Tenfold(base_url=hosting_url, api_key=api_key, timeout=timeout_seconds, max_retries=max_retries)

    @property
    def hosting_url(self) -> str:
        return self.client.base_url

    @property
    def timeout_seconds(self) -> float:
        return self.client.timeout

    def chat_completion(self, model: str, messages: Iterable[Mapping[str, Any]], *,
                        max_tokens: int | None = DEFAULT_MAX_TOKENS, temperature: float | None = DEFAULT_TEMPERATURE,
                        timeout_seconds: float | None = None,
                        **extra: Any) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """Answer ``messages`` (OpenAI chat messages) with ``model``; returns a ``ChatCompletion`` (the text is
        ``.choices[0].message.content``), or a ``Stream`` of ``ChatCompletionChunk`` with ``stream=True``.
        ``timeout_seconds`` limits this call only."""
        return self.client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=temperature,
            timeout_seconds=_check_timeout(timeout_seconds, "timeout_seconds"), **_split(extra, _CHAT_ARGS))

    def generate(self, model: str, prompt: str | list[str] | list[int], *,
                 max_tokens: int | None = DEFAULT_MAX_TOKENS, temperature: float | None = DEFAULT_TEMPERATURE,
                 timeout_seconds: float | None = None, **extra: Any) -> Completion | Stream[Completion]:
        """Continue ``prompt`` (no chat template) with ``model``; returns a ``Completion`` (the text is
        ``.choices[0].text``), or a ``Stream`` of them with ``stream=True``. ``timeout_seconds`` limits this
        call only."""
        return self.client.completions.create(
            model=model, prompt=prompt, max_tokens=max_tokens, temperature=temperature,
            timeout_seconds=_check_timeout(timeout_seconds, "timeout_seconds"), **_split(extra, _COMPLETION_ARGS))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> HostedLoraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HostedLoraClient(hosting_url={self.hosting_url!r}, timeout_seconds={self.timeout_seconds})"


def chat_completion_with_lora(model: str, messages: Iterable[Mapping[str, Any]], *, hosting_url: str | None = None,
                              api_key: str | None = None, timeout_seconds: float | None = None,
                              max_tokens: int | None = DEFAULT_MAX_TOKENS,
                              temperature: float | None = DEFAULT_TEMPERATURE, **extra: Any) -> ChatCompletion:
    """One ``HostedLoraClient(...).chat_completion(...)``, closed afterwards (not for ``stream=True``: the
    stream would outlive its client; use a ``HostedLoraClient`` for that). ``timeout_seconds`` defaults to 60."""
    if extra.get("stream"):
        raise ValueError("chat_completion_with_lora cannot stream; use HostedLoraClient(...).chat_completion("
                         "..., stream=True) and close the client when the stream ends")
    with HostedLoraClient(hosting_url, api_key, _check_timeout(timeout_seconds, "timeout_seconds")
                          or DEFAULT_TIMEOUT) as client:
        return client.chat_completion(model, messages, max_tokens=max_tokens, temperature=temperature, **extra)


def generate_with_lora(model: str, prompt: str | list[str] | list[int], *, hosting_url: str | None = None,
                       api_key: str | None = None, timeout_seconds: float | None = None,
                       max_tokens: int | None = DEFAULT_MAX_TOKENS, temperature: float | None = DEFAULT_TEMPERATURE,
                       **extra: Any) -> Completion:
    """One ``HostedLoraClient(...).generate(...)``, closed afterwards (not for ``stream=True``).
    ``timeout_seconds`` defaults to 60."""
    if extra.get("stream"):
        raise ValueError("generate_with_lora cannot stream; use HostedLoraClient(...).generate(..., stream=True) "
                         "and close the client when the stream ends")
    with HostedLoraClient(hosting_url, api_key, _check_timeout(timeout_seconds, "timeout_seconds")
                          or DEFAULT_TIMEOUT) as client:
        return client.generate(model, prompt, max_tokens=max_tokens, temperature=temperature, **extra)


__all__ = ["HostedLoraClient", "chat_completion_with_lora", "generate_with_lora"]
