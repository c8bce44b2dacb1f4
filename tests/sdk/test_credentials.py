"""Credential resolution order (arguments > env > credentials file > default) and the 0600 file."""

from __future__ import annotations

import json
import stat

import pytest

from tenfold.sdk import Tenfold
from tenfold.sdk.credentials import (
    DEFAULT_BASE_URL,
    credentials_path,
    load_credentials,
    normalize_base_url,
    resolve,
    save_credentials,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("TENFOLD_BASE_URL", "TENFOLD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TENFOLD_CONFIG_DIR", str(tmp_path / "cfg"))


def test_default_when_nothing_configured():
    resolved = resolve()
    assert resolved.base_url == DEFAULT_BASE_URL
    assert resolved.api_key is None
    assert (resolved.base_url_source, resolved.api_key_source) == ("default", None)


def test_order_arguments_then_env_then_file(monkeypatch):
    save_credentials("http://file-host:1", "tf-file")
    assert resolve().base_url == "http://file-host:1"
    assert resolve().api_key == "tf-file"

    monkeypatch.setenv("TENFOLD_BASE_URL", "http://env-host:2/v1")
    monkeypatch.setenv("TENFOLD_API_KEY", "tf-env")
    assert (resolve().base_url, resolve().api_key) == ("http://env-host:2", "tf-env")
    assert resolve().api_key_source == "env"

    client = Tenfold(base_url="http://arg-host:3", api_key="tf-arg")
    assert client.base_url == "http://arg-host:3/v1"
    assert client.root_url == "http://arg-host:3"
    assert client.api_key == "tf-arg"
    assert client._http.headers["authorization"] == "Bearer tf-arg"


def test_values_resolve_independently(monkeypatch):
    save_credentials("http://file-host:1", "tf-file")
    monkeypatch.setenv("TENFOLD_BASE_URL", "http://env-host:2")
    resolved = resolve()
    assert resolved.base_url == "http://env-host:2"
    assert resolved.api_key == "tf-file"  # the key still comes from the file


def test_file_is_written_0600_even_over_a_looser_file(tmp_path):
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)
    written = save_credentials("http://h:1", "tf-secret")
    assert written == path == tmp_path / "cfg" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"base_url": "http://h:1", "api_key": "tf-secret"}
    assert load_credentials() == {"base_url": "http://h:1", "api_key": "tf-secret"}


def test_corrupt_file_is_a_clear_error():
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text("not json")
    with pytest.raises(ValueError, match="tenfold login"):
        resolve()


@pytest.mark.parametrize(
    "given", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/", "h:8000"]
)
def test_base_url_with_or_without_v1(given):
    assert normalize_base_url(given) == "http://h:8000"
    assert Tenfold(base_url=given, api_key="k").url("/files") == "http://h:8000/v1/files"
    assert Tenfold(base_url=given, api_key="k").url("//health") == "http://h:8000/health"
