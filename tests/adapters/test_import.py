"""Importing adapters trained elsewhere (``POST /v1/adapters/import``): a PEFT folder made here with PEFT itself
is packed, validated against the base, stored as ``adp-…``, deployed by name and greedy-decodes exactly what
PEFT decodes locally; every bad archive or adapter is refused with a clear error and leaves nothing behind;
other organizations see nothing."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
import zstandard
from safetensors.torch import load_file, save_file

from tenfold import Tenfold
from tenfold.inference.prompts import Prompter
from tenfold.models.registry import load_causal_lm, resolve_base_model
from tests.conftest import TINY, new_org_key, start_server, stop_server

MESSAGES = [{"role": "user", "content": "Name a colour."}]


def make_adapter(folder: Path, model_cache: Path, *, r: int = 4, targets=("q_proj", "v_proj"), seed: int = 3,
                 base_name: str = TINY, base: str = TINY, scale: float = 0.5, **extra) -> Path:
    """A real PEFT LoRA adapter of ``base`` (the tiny model unless given) with non-zero B, drawn with standard
    deviation ``scale`` (so it changes what the model says); ``base_name`` goes in its config."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(load_causal_lm(resolve_base_model(base, models_dir=model_cache)),
                           LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets),
                                      init_lora_weights=False, task_type="CAUSAL_LM", **extra))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, scale)
    model.save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_name
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], *, zst: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return zstandard.ZstdCompressor().compress(raw) if zst else raw


def folder_members(folder: Path, prefix: str = "adapter/") -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    for f in sorted(folder.iterdir()):
        info = tarfile.TarInfo(prefix + f.name)
        data = f.read_bytes()
        info.size = len(data)
        out.append((info, data))
    return out


def stored(server) -> list[str]:
    root = server.home / "artifacts" / "adapters"
    return sorted(p.name for p in root.iterdir() if p.name != ".incoming") if root.exists() else []


def incoming_empty(server) -> bool:
    incoming = server.home / "artifacts" / "adapters" / ".incoming"
    return not incoming.exists() or not any(incoming.iterdir())


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, model_cache) -> Path:
    return make_adapter(tmp_path_factory.mktemp("peft") / "colour", model_cache)


def test_an_imported_adapter_deploys_by_name_and_decodes_what_peft_decodes(server, adapter_dir, model_cache):
    from peft import PeftModel

    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        imported = client.adapters.import_(adapter_dir, name="colour")
        assert imported.status == "imported" and imported.model.startswith("adp-")
        assert imported.rank == 4 and imported.target_modules == ["q_proj", "v_proj"]
        assert imported.base_model == TINY and imported.imported_from == "upload:colour.tar.zst"
        listed = {a.model: a for a in client.adapters.list().data}
        assert listed[imported.model].status == "imported" and listed[imported.model].name == "colour"

        deployed = client.adapters.create(model="colour")  # by name; it serves under its id
        assert deployed.model == imported.model and deployed.verified
        assert client.adapters.retrieve(imported.model).status == "deployed"
        assert imported.model in [m.id for m in client.models.list().data]
        reply = client.chat.completions.create(model=imported.model, messages=MESSAGES, max_tokens=8,
                                               temperature=0, extra_body={"ignore_eos": True})

    base_path = resolve_base_model(TINY, models_dir=model_cache)
    prompter = Prompter(base_path)
    prompt = prompter.chat_prompt(MESSAGES)
    tuned = PeftModel.from_pretrained(load_causal_lm(base_path), str(adapter_dir)).eval()
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = tuned.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8)
    assert prompter.tokenizer.decode(out[0, len(prompt):].tolist()) == reply.choices[0].message.content
    with server.client() as c:
        base_reply = c.post("/chat/completions", json={"model": TINY, "messages": MESSAGES, "max_tokens": 8,
                                                        "temperature": 0, "ignore_eos": True}).json()
        assert base_reply["choices"][0]["message"]["content"] != reply.choices[0].message.content

        # DELETE undeploys first (it is an import again), then deletes it with its files
        assert c.delete(f"/adapters/{imported.model}").status_code == 200
        assert c.get(f"/adapters/{imported.model}").json()["status"] == "imported"
        assert imported.model in stored(server)
        assert c.delete(f"/adapters/{imported.model}").status_code == 200
        assert c.get(f"/adapters/{imported.model}").status_code == 404
        assert imported.model not in stored(server)


def test_a_plain_tar_with_files_at_its_root_and_a_trainers_path_to_the_base_import(server, tmp_path, model_cache):
    folder = make_adapter(tmp_path / "a", model_cache, targets=("o_proj", "down_proj"), r=2)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/some/where/else/tiny-random-llama"  # a path on the trainer's machine
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with server.client() as c:
        r = c.post("/adapters/import", files={"file": ("a.tar", tar_bytes(folder_members(folder, ""), zst=False))})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["rank"] == 2 and body["target_modules"] == ["down_proj", "o_proj"] and body["name"] is None
        d = c.post("/adapters", json={"model": body["id"]})
        assert d.status_code == 200, d.text
        chat = c.post("/chat/completions", json={"model": body["id"], "messages": MESSAGES, "max_tokens": 3})
        assert chat.status_code == 200 and chat.json()["usage"]["completion_tokens"] == 3
        c.delete(f"/adapters/{body['id']}")
        c.delete(f"/adapters/{body['id']}")


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, model_cache):
    """An api-only server with a 300 kB upload limit, for the archive refusals."""
    s = start_server(tmp_path_factory.mktemp("import-home"), model_cache, role="api",
                     extra_env={"TENFOLD_MAX_UPLOAD_BYTES": "300000"})
    yield s
    stop_server(s)


def _refused(c, files: dict, status: int, *needles: str, data: dict | None = None) -> dict:
    r = c.post("/adapters/import", files=files, data=data or {})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    for needle in needles:
        assert needle in err["message"], err["message"]
    return err


def test_bad_archives_are_refused_and_leave_nothing(small_server, adapter_dir):
    good = folder_members(adapter_dir)
    with small_server.client() as c:
        def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = "") -> tuple:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            return info, data if kind == tarfile.REGTYPE else None

        cases = [
            ([*good, member("../evil.txt")], "points outside the archive"),
            ([*good, member("/etc/evil")], "points outside the archive"),
            ([*good, member("adapter/link", tarfile.SYMTYPE, link="/etc/passwd")], "is a link"),
            ([*good, member("adapter/hard", tarfile.LNKTYPE, link="adapter/adapter_config.json")], "is a link"),
            ([*good, member("adapter/dev", tarfile.CHRTYPE)], "device or special file"),
            ([*good, member("adapter/zeros.bin", data=bytes(400_000))], "unpacks to more than 300000 bytes"),
        ]
        for members, needle in cases:
            err = _refused(c, {"file": ("a.tar.zst", tar_bytes(members))}, 400, needle, "nothing was stored")
            assert err["param"] == "file" and err["code"] == "invalid_archive"
        _refused(c, {"file": ("a.tar.zst", b"\x28\xb5\x2f\xfd" + b"garbage" * 10)}, 400, "not a readable")
        _refused(c, {"file": ("a.tar", b"this is not a tar file at all" * 20)}, 400, "not a readable")
        _refused(c, {"file": ("big.tar", bytes(300_001))}, 413, "upload limit")
        _refused(c, {"file": ("x.tar", tar_bytes([member("notes/readme.txt")]))}, 400, "no adapter_config.json",
                 "adapter_model.safetensors")
        _refused(c, {}, 400, "exactly one of file")
        _refused(c, {"file": ("a.tar.zst", tar_bytes(good))}, 400, "exactly one of file", data={"hub_id": "a/b"})
        assert c.get("/adapters").json()["data"] == []
        assert stored(small_server) == [] and incoming_empty(small_server)


def _variant(src: Path, dest: Path, *, config: dict | None = None, tensors: dict | None = None,
             drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dest)
    if config is not None:
        cfg = json.loads((dest / "adapter_config.json").read_text())
        cfg.update(config)
        (dest / "adapter_config.json").write_text(json.dumps(cfg))
    state = load_file(str(dest / "adapter_model.safetensors"))
    state = {k: v for k, v in state.items() if not any(d in k for d in drop)}
    state.update(tensors or {})
    save_file(state, str(dest / "adapter_model.safetensors"))
    return dest


def test_adapters_that_do_not_fit_the_base_are_refused_by_name(small_server, adapter_dir, tmp_path):
    from tenfold.sdk.resources.serving import pack_folder

    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    state = load_file(str(adapter_dir / "adapter_model.safetensors"))
    cases = [
        (dict(config={"base_model_name_or_path": "meta-llama/Llama-3.1-8B"}), None,
         ["meta-llama/Llama-3.1-8B", TINY]),
        (dict(config={"base_model_name_or_path": "meta-llama/Llama-3.1-8B"}), TINY,
         ["meta-llama/Llama-3.1-8B", "base_model is 'tiny-random-llama'"]),
        (dict(config={"modules_to_save": ["lm_head"]}), None, ["modules_to_save", "lm_head"]),
        (dict(tensors={"base_model.model.lm_head.weight": torch.zeros(8, 64)}), None,
         ["not LoRA matrices", "base_model.model.lm_head.weight"]),
        (dict(tensors={"base_model.model.model.embed_tokens.weight": torch.zeros(8, 64)}), None,
         ["embed_tokens"]),
        (dict(config={"r": 8}), None, ["rank 4", "r=8"]),
        (dict(config={"rank_pattern": {"q_proj": 2}}), None, ["rank 4", "r=2"]),
        (dict(config={"r": None}, tensors={key: state[key][:2].contiguous()}), None,
         ["lora_A and lora_B of one rank"]),
        (dict(tensors={key: state[key].to(torch.float64)}), None, ["F64"]),
        (dict(tensors={key: torch.zeros(4, 65)}), None, ["[4, 65]", "does not fit q_proj"]),
        (dict(config={"peft_type": "IA3"}), None, ["peft_type is 'IA3'"]),
        (dict(config={"use_dora": True}), None, ["DoRA"]),
        (dict(config={"target_modules": ["c_attn"]}), None, ["c_attn", "match no module"]),
        (dict(drop=("lora_B",)), None, ["lora_A and lora_B"]),
    ]
    with small_server.client() as c:
        for i, (change, base, needles) in enumerate(cases):
            folder = _variant(adapter_dir, tmp_path / f"v{i}", **change)
            data = {"base_model": base} if base else {}
            _refused(c, {"file": ("v.tar.zst", pack_folder(folder).read())}, 400, *needles, data=data)
        (tmp_path / "nobin").mkdir()
        shutil.copy(adapter_dir / "adapter_config.json", tmp_path / "nobin")
        torch.save({}, tmp_path / "nobin" / "adapter_model.bin")
        _refused(c, {"file": ("v.tar.zst", pack_folder(tmp_path / "nobin").read())}, 400, "safe_serialization")
        _refused(c, {"file": ("v.tar.zst", pack_folder(adapter_dir).read())}, 400, "no-such-base",
                 data={"base_model": "no-such-base"})
        _refused(c, {"file": ("v.tar.zst", pack_folder(adapter_dir).read())}, 400, "letters, digits",
                 data={"name": "bad name!"})
        assert c.get("/adapters").json()["data"] == []
        assert stored(small_server) == [] and incoming_empty(small_server)


def test_hub_import_offline_is_a_clear_503(small_server):
    with small_server.client() as c:
        err = _refused(c, {}, 503, "not reachable", "tenfold adapters import DIR",
                       data={"hub_id": "someone/some-adapter"})
        assert err["type"]
        _refused(c, {}, 400, "not a Hugging Face repository id", data={"hub_id": "../../etc"})


def test_names_are_unique_per_organization_and_other_organizations_see_nothing(small_server, adapter_dir):
    from tenfold.sdk.resources.serving import pack_folder

    archive = pack_folder(adapter_dir).read()
    with small_server.client() as c:
        mine = c.post("/adapters/import", files={"file": ("a.tar.zst", archive)}, data={"name": "shared-name"}).json()
        _refused(c, {"file": ("a.tar.zst", archive)}, 409, "already has an adapter named 'shared-name'",
                 data={"name": "shared-name"})
        other_key = new_org_key(small_server, "import-other")
        with small_server.client(other_key) as o:
            for path in (f"/adapters/{mine['id']}", "/adapters/shared-name"):
                assert o.get(path).status_code == 404
                assert o.delete(path).status_code == 404
            r = o.post("/adapters", json={"model": mine["id"]})
            assert r.status_code == 404, r.text
            assert o.post("/adapters", json={"model": "shared-name"}).status_code == 404
            theirs = o.post("/adapters/import", files={"file": ("a.tar.zst", archive)}, data={"name": "shared-name"})
            assert theirs.status_code == 200 and theirs.json()["id"] != mine["id"]
            assert [a["id"] for a in o.get("/adapters").json()["data"]] == [theirs.json()["id"]]
            assert o.post("/chat/completions", json={"model": mine["id"], "messages": MESSAGES}).status_code == 404
        assert [a["id"] for a in c.get("/adapters").json()["data"]] == [mine["id"]]
        c.post("/adapters", json={"model": mine["id"], "verify": False})
        chat = c.post("/chat/completions", json={"model": mine["id"], "messages": MESSAGES, "max_tokens": 2})
        assert chat.status_code == 200
        assert c.delete(f"/adapters/{mine['id']}").json()["deleted"]  # undeploy
        assert c.delete("/adapters/shared-name").json()["deleted"]  # delete, by name
        assert stored(small_server) == [theirs.json()["id"]]


def test_the_cli_imports_lists_and_deletes(server, adapter_dir, tmp_path):
    from typer.testing import CliRunner

    from tenfold.cli.main import app

    env = {"TENFOLD_BASE_URL": server.base_url, "TENFOLD_API_KEY": server.api_key,
           "TENFOLD_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "200"}
    run = lambda *args: CliRunner().invoke(app, list(args), env=env)  # noqa: E731
    out = run("adapters", "import", str(adapter_dir), "--name", "from-cli")
    assert out.exit_code == 0, out.output
    adp = next(w.rstrip(":") for w in out.output.split() if w.startswith("adp-"))
    assert "rank 4" in out.output and f"tenfold deploy {adp}" in out.output
    listing = run("adapters")
    assert adp in listing.output and "from-cli" in listing.output and "imported" in listing.output
    assert run("deploy", "from-cli").exit_code == 0
    refused = run("adapters", "delete", "from-cli")
    assert refused.exit_code != 0 and f"tenfold undeploy {adp}" in refused.output
    assert run("undeploy", adp).exit_code == 0
    assert run("adapters", "delete", "from-cli").exit_code == 0
    assert adp not in run("adapters").output
    bad = run("adapters", "import", str(tmp_path / "missing"))
    assert bad.exit_code == 1 and "neither an adapter folder nor an archive" in bad.output


def test_a_hub_repository_imports_from_a_loopback_hub(tmp_path_factory, model_cache, adapter_dir):
    """The server fetches ``adapter_config.json`` and ``adapter_model.safetensors`` with ``hf_hub_download``
    from a loopback server speaking the Hub's resolve protocol (the real Hub is not reachable here)."""
    from tests.weights.fake_hub import FakeHub, Repo

    with FakeHub(tokens={}) as hub:
        hub.repos["someone/colour-lora"] = Repo(private=False, files={
            f.name: f.read_bytes() for f in adapter_dir.iterdir()})
        hub.repos["someone/not-an-adapter"] = Repo(private=False, files={"README.md": b"# hello"})
        hub.repos["someone/secret"] = Repo(private=True, files={
            f.name: f.read_bytes() for f in adapter_dir.iterdir()})
        s = start_server(tmp_path_factory.mktemp("hub-import"), model_cache, role="api", extra_env={
            "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": ""})
        try:
            with s.client() as c:
                r = c.post("/adapters/import", data={"hub_id": "someone/colour-lora", "name": "from-hub"})
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["imported_from"] == "hf:someone/colour-lora" and body["rank"] == 4
                assert (Path(s.home) / "artifacts" / "adapters" / body["id"] / "adapter_model.safetensors"
                        ).read_bytes() == (adapter_dir / "adapter_model.safetensors").read_bytes()
                assert c.post("/adapters", json={"model": "from-hub"}).status_code == 200
                assert c.post("/chat/completions", json={"model": body["id"], "messages": MESSAGES,
                                                         "max_tokens": 2}).status_code == 200
                _refused(c, {}, 400, "has no adapter_config.json", data={"hub_id": "someone/not-an-adapter"})
                _refused(c, {}, 400, "was not found", data={"hub_id": "someone/secret"})
                _refused(c, {}, 400, "was not found", data={"hub_id": "someone/nothing-here"})
                assert [a["id"] for a in c.get("/adapters").json()["data"]] == [body["id"]]
            assert stored(s) == [body["id"]] and incoming_empty(s)
        finally:
            stop_server(s)
