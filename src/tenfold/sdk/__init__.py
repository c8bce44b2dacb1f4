"""The tenfold Python SDK: ``from tenfold.sdk import Tenfold``.

Owns: the public SDK surface (client, result types, errors, credentials helpers). Talks to the server only
over HTTP; imports no server code.
"""

from tenfold.sdk.client import Tenfold
from tenfold.sdk.credentials import credentials_path, load_credentials, save_credentials
from tenfold.sdk.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    TenfoldError,
)
from tenfold.sdk.inference import ChatResult, ChatStream, CompletionResult, iter_sse_data
from tenfold.sdk.jobs import TERMINAL_STATUSES

__all__ = [
    "Tenfold", "TenfoldError", "APIConnectionError", "APITimeoutError", "AuthenticationError",
    "BadRequestError", "ConflictError", "NotFoundError", "PermissionDeniedError", "RateLimitError",
    "ServiceUnavailableError", "ChatResult", "ChatStream", "CompletionResult", "iter_sse_data",
    "TERMINAL_STATUSES", "credentials_path", "load_credentials", "save_credentials",
]
