"""One exception class per HTTP status, raised from real server answers where the server can produce them
(400, 401, 403, 404, 409, 413, 429), and from canned answers for 500 and 503."""

from __future__ import annotations

import socket

import httpx
import pytest

from tenfold.sdk import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    Tenfold,
    TenfoldError,
)
from tests.conftest import new_org_key, start_server, stop_server
from tests.sdk.conftest import ROWS, jsonl

MESSAGES = [{"role": "user", "content": "hi"}]


def _status_error(info, cls, status: int) -> TenfoldError:
    err = info.value
    assert type(err) is cls and isinstance(err, APIStatusError) and isinstance(err, TenfoldError)
    assert err.status == err.status_code == status and err.response.status_code == status
    assert err.message and err.type
    return err


def test_400_bad_request(client):
    with pytest.raises(BadRequestError) as info:
        client.chat.completions.create(model="tiny-random-llama", messages=[], max_tokens=2)
    assert _status_error(info, BadRequestError, 400).param == "messages"
    with pytest.raises(BadRequestError, match="line 1") as info:
        client.files.create(file=("bad.jsonl", b'{"messages": []}\n'), purpose="fine-tune")
    assert info.value.code == "invalid_file" and info.value.param == "file"


def test_401_bad_key_and_missing_key_hint(server, monkeypatch, tmp_path):
    with pytest.raises(AuthenticationError) as info:
        Tenfold(base_url=server.base_url, api_key="tf-wrong").files.list()
    assert "no API key configured" not in _status_error(info, AuthenticationError, 401).message
    monkeypatch.delenv("TENFOLD_API_KEY", raising=False)
    monkeypatch.setenv("TENFOLD_CONFIG_DIR", str(tmp_path))
    with pytest.raises(AuthenticationError, match="tenfold login"):  # the server's message says it already
        Tenfold(base_url=server.base_url).models.list()
    body = {"error": {"message": "Missing API key.", "type": "authentication_error", "param": None, "code": None}}
    canned = httpx.MockTransport(lambda request: httpx.Response(401, json=body))
    with pytest.raises(AuthenticationError, match="no API key configured: set TENFOLD_API_KEY or run `tenfold login`"):
        Tenfold(base_url="http://test", transport=canned).models.list()


def test_403_admin_route_with_a_member_key(server):
    member = Tenfold(base_url=server.base_url, api_key=new_org_key(server, "sdk-member"))
    with pytest.raises(PermissionDeniedError) as info:
        member.organizations.create(name="nope")
    assert _status_error(info, PermissionDeniedError, 403).code == "admin_required"
    with pytest.raises(PermissionDeniedError):
        member.organizations.spend_limit.update(member.me().organization_id, monthly_spend_limit_usd="1")


def test_404_not_found(client):
    with pytest.raises(NotFoundError) as info:
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    assert "ftjob-doesnotexist" in _status_error(info, NotFoundError, 404).message
    for call in (lambda: client.fine_tuning.jobs.cancel("ftjob-nope"), lambda: client.adapters.delete("ftjob-nope"),
                 lambda: client.batches.retrieve("batch_nope"), lambda: client.files.content("file-nope")):
        with pytest.raises(NotFoundError):
            call()


def test_409_deploying_a_job_without_a_final_adapter(client, base_model):
    uploaded = client.files.create(file=("long.jsonl", jsonl(ROWS)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=base_model, training_file=uploaded.id,
                                         hyperparameters={"n_epochs": 50, "batch_size": 4})
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    with pytest.raises(ConflictError) as info:
        client.adapters.create(model=job.id)
    assert _status_error(info, ConflictError, 409).code == "no_final_adapter"
    assert client.fine_tuning.jobs.resume(job.id).status in ("validating_files", "queued", "running")
    client.fine_tuning.jobs.cancel(job.id)


def test_413_upload_over_the_server_limit(tmp_path_factory, model_cache):
    small = start_server(tmp_path_factory.mktemp("small"), model_cache, extra_env={"TENFOLD_MAX_UPLOAD_BYTES": "300"},
                         role="api")
    try:
        with Tenfold(base_url=small.base_url, api_key=small.api_key) as c:
            assert c.files.create(file=("one.jsonl", jsonl(ROWS[:1])), purpose="fine-tune").bytes <= 300
            with pytest.raises(PayloadTooLargeError, match="TENFOLD_MAX_UPLOAD_BYTES") as info:
                c.files.create(file=("big.jsonl", jsonl(ROWS)), purpose="fine-tune")
            assert _status_error(info, PayloadTooLargeError, 413).param == "file"
    finally:
        stop_server(small)


def test_429_spend_limit_is_raised_at_once_never_retried(client, server, base_model):
    key = new_org_key(server, "sdk-broke")
    member = Tenfold(base_url=server.base_url, api_key=key, max_retries=2)
    client.organizations.spend_limit.update(member.me().organization_id, monthly_spend_limit_usd="0")
    sleeps: list[float] = []
    member._sleep = sleeps.append  # a retry would sleep min(Retry-After, 60) s first
    with pytest.raises(RateLimitError) as info:
        member.chat.completions.create(model=base_model, messages=MESSAGES, max_tokens=2)
    err = _status_error(info, RateLimitError, 429)
    assert err.code == "spend_limit_exceeded" and err.retry_after and err.retry_after >= 1
    assert sleeps == []


@pytest.mark.parametrize("status, cls", [(500, InternalServerError), (502, InternalServerError),
                                         (503, ServiceUnavailableError), (418, APIStatusError),
                                         (422, BadRequestError)])
def test_other_statuses_map_to_their_class(status, cls):
    body = {"error": {"message": f"canned {status}", "type": "api_error", "param": None, "code": "canned"}}
    client = Tenfold(base_url="http://test", api_key="tf-x",
                     transport=httpx.MockTransport(lambda request: httpx.Response(status, json=body)))
    with pytest.raises(cls, match=f"canned {status}") as info:
        client.models.list()
    assert type(info.value) is cls and info.value.status == status and info.value.code == "canned"


def test_non_json_error_body_keeps_the_text():
    client = Tenfold(base_url="http://test", api_key="tf-x", max_retries=0,
                     transport=httpx.MockTransport(lambda request: httpx.Response(502, text="bad gateway")))
    with pytest.raises(InternalServerError, match="HTTP 502: bad gateway"):
        client.health()


def test_connection_error_says_how_to_start_the_server():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Tenfold(base_url=f"http://127.0.0.1:{port}/v1", api_key="tf-x", max_retries=0)
    with pytest.raises(APIConnectionError, match=f"not reachable at http://127.0.0.1:{port}.*tenfold serve") as info:
        client.models.list()
    assert isinstance(info.value, TenfoldError) and info.value.status is None
