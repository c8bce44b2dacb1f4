"""tenfold: fine-tune LoRA adapters, deploy any checkpoint, serve thousands of them on one base model.

``from tenfold import Tenfold, AsyncTenfold`` (and the SDK's errors, ``Stream``, ``AsyncStream``,
``APIResponse``, the hosted-LoRA helper ``HostedLoraClient``, ``chat_completion_with_lora``,
``generate_with_lora``) loads ``tenfold.sdk`` on first use, so ``import tenfold`` stays light (the server, CLI and
engine import their own modules).
"""

from __future__ import annotations

from typing import Any

from tenfold.version import __version__  # noqa: F401 - re-exported

_SDK_NAMES = frozenset({
    "Tenfold", "AsyncTenfold", "APIResponse", "Stream", "AsyncStream", "TenfoldError", "APIStatusError",
    "APIConnectionError", "APITimeoutError", "BadRequestError", "AuthenticationError", "PermissionDeniedError",
    "NotFoundError", "ConflictError", "PayloadTooLargeError", "RateLimitError", "InternalServerError",
    "ServiceUnavailableError", "HostedLoraClient", "chat_completion_with_lora", "generate_with_lora",
})


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        from tenfold import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'tenfold' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SDK_NAMES)
