"""Where the SDK and CLI find the server URL and API key.

Owns: the credentials file written by ``tenfold login`` (``~/.config/tenfold/credentials.json``, or
``$TENFOLD_CONFIG_DIR/credentials.json``; mode 0600; ``{"base_url", "api_key"}``) and the resolution
order: explicit arguments, then ``TENFOLD_BASE_URL`` / ``TENFOLD_API_KEY``, then that file, then the
default URL. Does not own: the server's own admin key (``$TENFOLD_HOME/admin_key``, written by the server).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
ENV_BASE_URL = "TENFOLD_BASE_URL"
ENV_API_KEY = "TENFOLD_API_KEY"
ENV_CONFIG_DIR = "TENFOLD_CONFIG_DIR"


def config_dir() -> Path:
    """The folder holding ``credentials.json``."""
    override = os.environ.get(ENV_CONFIG_DIR)
    return Path(override).expanduser() if override else Path.home() / ".config" / "tenfold"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def load_credentials() -> dict[str, str]:
    """The saved ``{"base_url", "api_key"}`` (either may be missing); ``{}`` when there is no file."""
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read tenfold credentials at {path}: {exc}; run `tenfold login` again") from exc
    if not isinstance(data, dict):
        raise ValueError(f"tenfold credentials at {path} are not a JSON object; run `tenfold login` again")
    return {k: str(v) for k, v in data.items() if k in ("base_url", "api_key") and v}


def save_credentials(base_url: str, api_key: str) -> Path:
    """Write the credentials file readable by the owner only (0600) and return its path."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        with os.fdopen(fd, "w") as fh:
            json.dump({"base_url": base_url, "api_key": api_key}, fh, indent=2)
            fh.write("\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def normalize_base_url(url: str) -> str:
    """The server root, without a trailing ``/`` or ``/v1`` (both spellings are accepted)."""
    root = url.strip().rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    if not root.startswith(("http://", "https://")):
        root = "http://" + root
    return root


@dataclass(frozen=True)
class Resolved:
    base_url: str  # the server root, no /v1
    api_key: str | None
    base_url_source: str  # "argument" | "env" | "file" | "default"
    api_key_source: str | None


def resolve(base_url: str | None = None, api_key: str | None = None) -> Resolved:
    """Apply the resolution order to each value independently."""
    saved: dict[str, str] | None = None

    def from_file() -> dict[str, str]:
        nonlocal saved
        if saved is None:
            saved = load_credentials()
        return saved

    if base_url:
        url, url_src = base_url, "argument"
    elif os.environ.get(ENV_BASE_URL):
        url, url_src = os.environ[ENV_BASE_URL], "env"
    elif from_file().get("base_url"):
        url, url_src = from_file()["base_url"], "file"
    else:
        url, url_src = DEFAULT_BASE_URL, "default"

    key: str | None
    if api_key:
        key, key_src = api_key, "argument"
    elif os.environ.get(ENV_API_KEY):
        key, key_src = os.environ[ENV_API_KEY], "env"
    elif from_file().get("api_key"):
        key, key_src = from_file()["api_key"], "file"
    else:
        key, key_src = None, None
    return Resolved(normalize_base_url(url), key, url_src, key_src)
