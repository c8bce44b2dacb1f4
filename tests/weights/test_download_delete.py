"""Weights out of the server: a job's adapter or merged model as a streamed ``.tar.zst`` (extracted, it loads
with PEFT / transformers and greedy-decodes exactly the tokens the server returns), the errors of bad
downloads, and deleting a job (refused while it runs or serves; afterwards a 404, its usage rows kept)."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import torch
import zstandard

from tenfold import Tenfold
from tenfold.inference.prompts import Prompter
from tenfold.models.registry import load_causal_lm, resolve_base_model
from tests.api.helpers import train_tiny, wait_job
from tests.conftest import TINY, new_org_key

MESSAGES = [{"role": "user", "content": "What is 2 plus 3?"}]


def extract(archive: Path, dest: Path) -> Path:
    with zstandard.ZstdDecompressor().stream_reader(open(archive, "rb")) as z, tarfile.open(fileobj=z, mode="r|") as t:
        t.extractall(dest, filter="data")
    (top,) = list(dest.iterdir())
    return top


def greedy(model, prompt: list[int], n: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n)
    return out[0, len(prompt):].tolist()


def served(client: Tenfold, model: str, n: int = 8) -> str:
    r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=n, temperature=0, extra_body={
        "ignore_eos": True})
    return r.choices[0].message.content


def test_adapter_and_merged_downloads_decode_what_the_server_serves(server, job, model_cache, tmp_path):
    from peft import PeftModel

    base = resolve_base_model(TINY, models_dir=model_cache)
    prompter = Prompter(base)
    prompt = prompter.chat_prompt(MESSAGES)
    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        seen: list[int] = []
        archive = client.fine_tuning.jobs.download(job, output=f"{tmp_path}/a/", on_progress=seen.append)
        assert archive.name == f"{job}-adapter.tar.zst" and seen and seen[-1] == archive.stat().st_size
        folder = extract(archive, tmp_path / "adapter")
        assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
        client.adapters.create(model=job)
        tuned = PeftModel.from_pretrained(load_causal_lm(base), str(folder)).eval()
        assert prompter.tokenizer.decode(greedy(tuned, prompt, 8)) == served(client, job)

        merged_archive = client.fine_tuning.jobs.download(job, output=f"{tmp_path}/m/", checkpoint_step=2,
                                                          checkpoint_type="merged")
        assert merged_archive.name == f"{job}-step-2-merged.tar.zst"
        merged = extract(merged_archive, tmp_path / "merged")
        names = {p.name for p in merged.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
        from transformers import AutoModelForCausalLM, AutoTokenizer

        full = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
        assert AutoTokenizer.from_pretrained(str(merged)).chat_template  # the chat template travels with it
        client.adapters.create(model=f"{job}/step-2")
        assert prompter.tokenizer.decode(greedy(full, prompt, 8)) == served(client, job)
        client.adapters.delete(job)


def test_bad_downloads_are_clear_and_other_organizations_see_nothing(server, job):
    with server.client() as c:
        r = c.get(f"/fine_tuning/jobs/{job}/content", params={"checkpoint_step": 99})
        assert r.status_code == 404 and "Saved steps: 2, 4" in r.json()["error"]["message"]
        assert c.get(f"/fine_tuning/jobs/{job}/content", params={"checkpoint_type": "full"}).status_code == 400
        assert c.get("/fine_tuning/jobs/ftjob-nope/content").status_code == 404
        db = sqlite3.connect(server.home / "tenfold.db")  # a base model this server cannot load
        db.execute("update fine_tuning_jobs set model = 'no-such-base' where id = ?", (job,))
        db.commit()
        try:
            r = c.get(f"/fine_tuning/jobs/{job}/content", params={"checkpoint_type": "merged"})
            assert r.status_code == 400 and "no-such-base" in r.json()["error"]["message"]
            assert "checkpoint_type=adapter" in r.json()["error"]["message"]
            db.execute("update fine_tuning_jobs set model = 'smollm2-135m-instruct' where id = ?", (job,))
            db.commit()  # a base with a Hub name: the downloaded config names it so, loadable anywhere
            archive = c.get(f"/fine_tuning/jobs/{job}/content").content
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(archive)) as z, \
                    tarfile.open(fileobj=z, mode="r|") as t:
                configs = [json.load(t.extractfile(m)) for m in t if m.name.endswith("adapter_config.json")]
            assert configs[0]["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
            assert configs[0]["peft_type"] == "LORA"
        finally:
            db.execute("update fine_tuning_jobs set model = ? where id = ?", (TINY, job))
            db.commit()
    with server.client(new_org_key(server, "weights-other")) as o:
        assert o.get(f"/fine_tuning/jobs/{job}/content").status_code == 404
        assert o.delete(f"/fine_tuning/jobs/{job}").status_code == 404


def test_delete_is_refused_while_running_or_serving_and_keeps_usage(server, job, tmp_path):
    with server.client() as c:
        running = train_tiny(c, checkpoint_every=0, n_epochs=100)
        r = c.delete(f"/fine_tuning/jobs/{running['id']}")
        assert r.status_code == 409 and "cancel it first" in r.json()["error"]["message"]
        c.post(f"/fine_tuning/jobs/{running['id']}/cancel")
        c.post("/adapters", json={"model": job, "verify": False})
        r = c.delete(f"/fine_tuning/jobs/{job}")
        assert r.status_code == 409 and "tenfold undeploy" in r.json()["error"]["message"]
        c.delete(f"/adapters/{job}")
        folder = Path(c.get(f"/fine_tuning/jobs/{job}/checkpoints").json()["data"][0]["metrics"] and
                      server.home / "artifacts" / "jobs" / job)
        assert folder.is_dir()
        usage_before = [u for u in c.get("/usage", params={"limit": 100}).json()["data"] if u["request_id"] == job]
        assert c.delete(f"/fine_tuning/jobs/{job}").json() == {"id": job, "object": "fine_tuning.job", "deleted": True}
        assert c.get(f"/fine_tuning/jobs/{job}").status_code == 404
        assert c.get(f"/fine_tuning/jobs/{job}/content").status_code == 404
        assert not folder.exists()
        assert usage_before  # training was billed to this job
        usage_after = [u for u in c.get("/usage", params={"limit": 100}).json()["data"] if u["request_id"] == job]
        assert usage_after == usage_before
        assert c.delete(f"/fine_tuning/jobs/{running['id']}").status_code == 200


def test_the_cli_downloads_and_deletes(server, tmp_path):
    from typer.testing import CliRunner

    from tenfold.cli.main import app

    env = {"TENFOLD_BASE_URL": server.base_url, "TENFOLD_API_KEY": server.api_key,
           "TENFOLD_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "200"}
    run = lambda *args: CliRunner().invoke(app, list(args), env=env)  # noqa: E731
    with server.client() as c:
        other = train_tiny(c, checkpoint_every=0, n_epochs=1)
        assert wait_job(c, other["id"])["status"] == "succeeded"
    out = run("download", other["id"], "-o", str(tmp_path))
    assert out.exit_code == 0, out.output
    archive = tmp_path / f"{other['id']}-adapter.tar.zst"
    assert archive.is_file() and f"tar --zstd -xf {archive}" in " ".join(out.output.split())
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(archive.read_bytes())) as z, \
            tarfile.open(fileobj=z, mode="r|") as t:
        assert sorted(m.name.split("/", 1)[1] for m in t if m.isfile()) == ["adapter_config.json",
                                                                            "adapter_model.safetensors"]
    bad = run("download", other["id"], "-s", "7", "-o", str(tmp_path))
    assert bad.exit_code != 0 and "Saved steps" in bad.output and not list(tmp_path.glob("*.part"))
    assert run("jobs", "delete", other["id"]).exit_code == 0
    gone = run("download", other["id"], "-o", str(tmp_path))
    assert gone.exit_code != 0 and "was found" in gone.output
