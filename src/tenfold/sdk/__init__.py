"""The tenfold Python SDK: ``from tenfold import Tenfold`` (or ``from tenfold.sdk import Tenfold``).

Shaped like the official ``openai`` SDK: one resource per REST noun with OpenAI's verbs
(``client.files.create``, ``client.fine_tuning.jobs.retrieve``, ``client.chat.completions.create``, …),
typed results from ``tenfold.types``, one exception class per HTTP status, ``with_raw_response`` on every
resource, per-call ``timeout_seconds``, and retries only where they are safe. ``AsyncTenfold`` has the same
surface for asyncio. ``HostedLoraClient`` / ``chat_completion_with_lora`` / ``generate_with_lora`` are a small
helper for calling a served adapter (``hosted``); ``hub.export_to_hub`` copies an adapter to the Hugging Face
Hub (imported from ``tenfold.sdk.hub``, not here).

Owns: the public SDK surface. Talks to the server only over HTTP; imports no server code (only
``tenfold.types``, httpx, pydantic and the standard library). See docs/sdk.md.
"""

from tenfold.sdk._response import APIResponse
from tenfold.sdk._streaming import AsyncStream, Stream
from tenfold.sdk.client import AsyncTenfold, Tenfold
from tenfold.sdk.credentials import credentials_path, load_credentials, save_credentials
from tenfold.sdk.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    TenfoldError,
)
from tenfold.sdk.hosted import HostedLoraClient, chat_completion_with_lora, generate_with_lora

__all__ = [
    "Tenfold", "AsyncTenfold", "APIResponse", "Stream", "AsyncStream",
    "TenfoldError", "APIStatusError", "APIConnectionError", "APITimeoutError", "BadRequestError",
    "AuthenticationError", "PermissionDeniedError", "NotFoundError", "ConflictError", "PayloadTooLargeError",
    "RateLimitError", "InternalServerError", "ServiceUnavailableError",
    "credentials_path", "load_credentials", "save_credentials",
    "HostedLoraClient", "chat_completion_with_lora", "generate_with_lora",
]
