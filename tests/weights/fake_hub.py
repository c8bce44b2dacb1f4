"""A loopback fake of the part of the Hugging Face Hub API that ``huggingface_hub`` 2.4.0 uses to create a
repository and upload a folder with plain (non-Xet) transfers, for testing ``tenfold export``.

Endpoints (as ``hf_api.py``, ``_commit_api.py`` and ``lfs.py`` call them):

- ``GET /api/whoami-v2``: the token's user, or 401 "Invalid credentials in Authorization header".
- ``POST /api/repos/create``: ``{"name", "organization", "visibility", "type"}``; 403 outside the user's
  namespaces, 409 when it exists.
- ``GET /api/models/{owner}/{name}`` (and ``…/revision/{rev}``): repo info (``private``, ``siblings``);
  404 ``X-Error-Code: RepoNotFound`` when missing or private to someone else.
- ``POST /api/validate-yaml``: parses the README front matter (400 with ``errors`` when it is not YAML).
- ``POST /api/models/{owner}/{name}/preupload/{rev}``: ``lfs`` for ``*.safetensors`` and files over
  10 MB, else ``regular``.
- ``POST /{owner}/{name}.git/info/lfs/objects/batch``: ``basic`` transfer only (never Xet or multipart):
  an upload ``href`` (``PUT /_lfs/{oid}``, sha256-checked) and a verify ``href`` (``POST /_lfs/{oid}/verify``).
- ``POST /api/models/{owner}/{name}/commit/{rev}``: the ndjson commit (``header``, ``file`` base64,
  ``lfsFile`` by oid, ``deletedFile``).
- ``HEAD`` / ``GET /{owner}/{name}/resolve/{rev}/{path}`` (what ``hf_hub_download`` calls): the file's bytes
  with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``; public repositories without a token, private ones
  with their owner's; 404 ``RepoNotFound`` / ``EntryNotFound`` as the Hub answers.

Every call needs ``Authorization: Bearer <a known token>`` (except the PUT to the LFS href, which the client
sends without it, as to S3). Files are kept in memory per repository (``FakeHub.repos``). Xet is not
spoken: tests must set ``huggingface_hub.constants.HF_HUB_DISABLE_XET`` (or ``HF_HUB_DISABLE_XET=1`` before
importing huggingface_hub), because with ``hf_xet`` installed the client uses Xet without asking the server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

INVALID_TOKEN = "Invalid credentials in Authorization header"
_REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)  # commit summaries, oldest first


class FakeHub:
    """``with FakeHub(tokens={"hf_good": ("alice", ["alice-org"])}) as hub: hub.url`` serves on 127.0.0.1."""

    def __init__(self, tokens: dict[str, tuple[str, list[str]]]) -> None:
        self.tokens = tokens  # token -> (user, organizations the user may write to)
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status)
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def user(self, authorization: str | None) -> tuple[str, list[str]] | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return self.tokens.get(authorization[len("Bearer "):])


@dataclass
class _Raw:
    """A file body (not JSON) with its headers."""

    data: bytes
    headers: dict[str, str]


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, message: str, code: str | None = None) -> _Reply:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return _Reply(status, {"error": message}, headers)


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            body = self._body()
            try:
                with hub.lock:
                    r = _Reply(200, self._route(method, path, body))
            except _Reply as reply:
                r = reply
            except Exception as e:  # a bug in the fake: say so instead of dropping the connection
                r = _error(500, f"fake hub failed: {e!r}")
            raw = r.body if isinstance(r.body, _Raw) else None
            data = raw.data if raw else json.dumps(r.body).encode()
            hub.calls.append((method, path, r.status))
            self.send_response(r.status)
            self.send_header("Content-Type", "application/octet-stream" if raw else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in {**r.headers, **(raw.headers if raw else {})}.items():
                self.send_header(k, v)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        def _auth(self) -> tuple[str, list[str]]:
            who = hub.user(self.headers.get("Authorization"))
            if who is None:
                raise _error(401, INVALID_TOKEN)
            return who

        def _repo(self, repo_id: str, *, write: bool) -> Repo:
            user, orgs = self._auth()
            repo = hub.repos.get(repo_id)
            owner = repo_id.split("/", 1)[0]
            mine = owner in (user, *orgs)
            if repo is None or (repo.private and not mine):
                raise _error(404, "Repository not found", "RepoNotFound")
            if write and not mine:
                raise _error(403, f"You don't have the rights to write to {repo_id}")
            return repo

        def _resolve(self, repo_id: str, file: str) -> _Raw:
            repo = hub.repos.get(repo_id)
            owner = repo_id.split("/", 1)[0]
            who = hub.user(self.headers.get("Authorization"))
            if repo is None or (repo.private and (who is None or owner not in (who[0], *who[1]))):
                raise _error(404, "Repository not found", "RepoNotFound")
            if file not in repo.files:
                raise _error(404, f"{file} does not exist on main", "EntryNotFound")
            data = repo.files[file]
            commit = hashlib.sha1(f"{repo_id}{len(repo.commits)}".encode()).hexdigest()
            return _Raw(data, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})

        def _route(self, method: str, path: str, body: bytes) -> Any:
            if method in ("GET", "HEAD") and (m := re.fullmatch(rf"/{_REPO}/resolve/main/(?P<file>.+)", path)):
                return self._resolve(m["repo"], m["file"])
            if method == "GET" and path == "/api/whoami-v2":
                user, orgs = self._auth()
                return {"type": "user", "name": user, "orgs": [{"name": o} for o in orgs],
                        "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}}
            if method == "POST" and path == "/api/repos/create":
                user, orgs = self._auth()
                req = json.loads(body)
                if req.get("type") not in (None, "model"):
                    raise _error(400, "only model repositories here")
                owner = req.get("organization") or user
                repo_id = f"{owner}/{req['name']}"
                if owner not in (user, *orgs):
                    raise _error(403, f'You don\'t have the rights to create a model under the namespace "{owner}"')
                if repo_id in hub.repos:
                    raise _Reply(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
                hub.repos[repo_id] = Repo(private=req.get("visibility") == "private")
                return {"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id}
            if m := re.fullmatch(rf"/api/models/{_REPO}(?:/revision/[^/]+)?", path):
                repo = self._repo(m["repo"], write=False)
                return {"id": m["repo"], "modelId": m["repo"], "private": repo.private, "sha": "0" * 40,
                        "siblings": [{"rfilename": f} for f in sorted(repo.files)]}
            if method == "POST" and path == "/api/validate-yaml":
                self._auth()
                content = json.loads(body)["content"]
                m = re.match(r"^---\n(.*?)\n---\n", content, re.S)
                try:
                    meta = yaml.safe_load(m.group(1)) if m else {}
                except yaml.YAMLError as e:
                    raise _Reply(400, {"errors": [{"message": str(e)}]}) from None
                if not isinstance(meta, dict):
                    raise _Reply(400, {"errors": [{"message": "metadata must be a mapping"}]})
                return {"errors": [], "warnings": []}
            if m := re.fullmatch(rf"/api/models/{_REPO}/preupload/main", path):
                repo = self._repo(m["repo"], write=True)
                files = json.loads(body)["files"]
                return {"files": [{"path": f["path"], "shouldIgnore": False,
                                   "uploadMode": "lfs" if f["path"].endswith(".safetensors") or f["size"] > 10 << 20
                                   else "regular", "oid": None} for f in files]}
            if m := re.fullmatch(rf"/{_REPO}\.git/info/lfs/objects/batch", path):
                self._repo(m["repo"], write=True)
                req = json.loads(body)
                if "basic" not in req.get("transfers", ["basic"]):
                    raise _error(400, "only the basic transfer is served here")
                objects = []
                for o in req["objects"]:
                    entry: dict[str, Any] = {"oid": o["oid"], "size": o["size"], "authenticated": True}
                    if o["oid"] not in hub.lfs:
                        entry["actions"] = {"upload": {"href": f"{hub.url}/_lfs/{o['oid']}"},
                                            "verify": {"href": f"{hub.url}/_lfs/{o['oid']}/verify"}}
                    objects.append(entry)
                return {"transfer": "basic", "objects": objects}
            if method == "PUT" and (m := re.fullmatch(r"/_lfs/(?P<oid>[0-9a-f]{64})", path)):
                if hashlib.sha256(body).hexdigest() != m["oid"]:
                    raise _error(400, "content does not match its oid")
                hub.lfs[m["oid"]] = body
                return {}
            if method == "POST" and (m := re.fullmatch(r"/_lfs/(?P<oid>[0-9a-f]{64})/verify", path)):
                self._auth()
                req = json.loads(body)
                if req["oid"] not in hub.lfs or len(hub.lfs[req["oid"]]) != req["size"]:
                    raise _error(404, "object not uploaded")
                return {}
            if m := re.fullmatch(rf"/api/models/{_REPO}/commit/main", path):
                repo = self._repo(m["repo"], write=True)
                summary, staged = "", dict(repo.files)
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    value = item["value"]
                    if item["key"] == "header":
                        summary = value["summary"]
                    elif item["key"] == "file":
                        staged[value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            raise _error(422, f"LFS object {value['oid']} of {value['path']} was not uploaded")
                        staged[value["path"]] = hub.lfs[value["oid"]]
                    elif item["key"] == "deletedFile":
                        staged.pop(value["path"], None)
                    else:
                        raise _error(400, f"unsupported commit operation {item['key']}")
                repo.files = staged
                repo.commits.append(summary)
                oid = hashlib.sha1(f"{m['repo']}{len(repo.commits)}".encode()).hexdigest()
                return {"success": True, "commitOid": oid, "commitUrl": f"{hub.url}/{m['repo']}/commit/{oid}"}
            raise _error(404, f"fake hub: no route for {method} {path}")

    return Handler
