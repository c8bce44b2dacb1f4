"""``tenfold export`` / ``tenfold.sdk.hub.export_to_hub``: a job's adapter copied, client side, into a Hugging
Face Hub repository — here a loopback fake of the Hub's API (``fake_hub``), driven by the real
``huggingface_hub`` client. The uploaded files load as a PEFT adapter equal to the server's download; the
model card carries the data, hyperparameters and final losses; the repository is private unless ``--public``;
token, permission and unknown-job failures are one clear line and upload nothing; no temporary files stay."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml

from tenfold import Tenfold
from tenfold.sdk.hub import HubExportError, export_to_hub, extract_adapter, hub_base_model, parse_adapter_id
from tests.conftest import TINY, free_port, new_org_key
from tests.weights.fake_hub import FakeHub

TOKEN = "hf_alice_write_token"
SMOL_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def hub():
    import huggingface_hub.constants as hf_constants

    # hf_xet is installed, and with it huggingface_hub uploads through Xet without asking the server; the fake
    # speaks only the plain LFS "basic" transfer. The test process must also not be in offline mode.
    saved = hf_constants.HF_HUB_DISABLE_XET, hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_DISABLE_XET, hf_constants.HF_HUB_OFFLINE = True, False
    try:
        with FakeHub(tokens={TOKEN: ("alice", ["alice-lab"])}) as h:
            yield h
    finally:
        hf_constants.HF_HUB_DISABLE_XET, hf_constants.HF_HUB_OFFLINE = saved


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    """tempfile's folder for the code under test, checked empty afterwards (nothing half-written stays)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


def cli(server, hub, tmp_path, *args, **env):
    from typer.testing import CliRunner

    from tenfold.cli.main import app

    base = {"TENFOLD_BASE_URL": server.base_url, "TENFOLD_API_KEY": server.api_key, "HF_TOKEN": TOKEN,
            "TENFOLD_CONFIG_DIR": str(tmp_path / "config"), "HF_ENDPOINT": hub.url, "COLUMNS": "200"}
    return CliRunner().invoke(app, ["export", *args], env={**base, **env})


def downloaded_adapter(server, job: str, tmp_path: Path, step: int | None = None) -> Path:
    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        archive = client.fine_tuning.jobs.download(job, output=f"{tmp_path}/dl/", checkpoint_step=step,
                                                   checkpoint_type="adapter")
    return extract_adapter(archive, tmp_path / "dl-adapter")


def hub_folder(hub: FakeHub, repository: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name, data in hub.repos[repository].files.items():
        (dest / name).write_bytes(data)
    return dest


def front_matter(card: str) -> dict:
    head, _, _ = card.removeprefix("---\n").partition("\n---\n")
    return yaml.safe_load(head)


def test_adapter_ids_and_hub_names():
    assert parse_adapter_id("ftjob-abc") == ("ftjob-abc", None)
    assert parse_adapter_id("ftjob-abc/step-12") == ("ftjob-abc", 12)
    for bad in ("", "ftjob-abc/step-x", "a/b/c", "ftjob abc"):
        with pytest.raises(ValueError, match="<job id>/step-<N>"):
            parse_adapter_id(bad)
    assert hub_base_model("smollm2-135m-instruct") == SMOL_HUB  # the registered name the server trains on
    assert hub_base_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert hub_base_model(TINY) is None and hub_base_model("/models/local") is None


def test_cli_exports_a_private_peft_adapter_that_loads_and_equals_the_download(server, job, hub, model_cache,
                                                                               tmp_path, scratch):
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file

    from tenfold.models.registry import load_causal_lm, resolve_base_model

    out = cli(server, hub, tmp_path, "--adapter-id", job, "--repository", "alice/tiny-adder")
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert f"exported {job} to {hub.url}/alice/tiny-adder (private" in text
    assert "has no Hugging Face Hub name" in text  # the tiny test model is not on the Hub
    repo = hub.repos["alice/tiny-adder"]
    assert repo.private is True and repo.commits == [f"Upload {job} from tenfold"]
    assert sorted(repo.files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert any(m == "PUT" and p.startswith("/_lfs/") for m, p, _ in hub.calls)  # the weights went over LFS

    uploaded = hub_folder(hub, "alice/tiny-adder", tmp_path / "from-hub")
    original = downloaded_adapter(server, job, tmp_path)
    assert json.loads((uploaded / "adapter_config.json").read_text()) == json.loads(
        (original / "adapter_config.json").read_text())  # no Hub name for the tiny base: the config is unchanged
    base = load_causal_lm(resolve_base_model(TINY, models_dir=model_cache))
    tuned = PeftModel.from_pretrained(base, str(uploaded))
    expected = load_file(str(original / "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(tuned)
    assert expected and set(loaded) == set(expected)
    assert all(loaded[k].equal(expected[k]) for k in expected)

    card = repo.files["README.md"].decode()
    meta = front_matter(card)
    assert meta["library_name"] == "peft" and {"lora", "peft", "tenfold", "sft"} <= set(meta["tags"])
    assert "base_model" not in meta
    with server.client() as c:
        j = c.get(f"/fine_tuning/jobs/{job}").json()
        f = c.get(f"/files/{j['training_file']}").json()
        train_losses = [p["train_loss"] for p in c.get(f"/fine_tuning/jobs/{job}/metrics").json()["data"]
                        if p.get("train_loss") is not None]
    assert f"`{f['filename']}` ({f['n_examples']} examples, {f['n_tokens']} tokens)" in card
    assert f"trained tokens (all epochs): {j['trained_tokens']}" in card
    assert f"| lora_r | {j['hyperparameters']['lora_r']} |" in card
    assert f"train loss: {train_losses[-1]:.4f}" in card
    assert 'PeftModel.from_pretrained(base, "alice/tiny-adder")' in card


def test_sdk_exports_a_checkpoint_publicly_with_the_base_models_hub_name(server, job, hub, tmp_path, scratch):
    seen: list[tuple[str, int, int | None]] = []
    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        result = export_to_hub(client, f"{job}/step-2", "alice-lab/adder-step-2", token=TOKEN, private=False,
                               base_model=SMOL_HUB, endpoint=hub.url,
                               on_progress=lambda *event: seen.append(event))
    assert result.private is False and hub.repos["alice-lab/adder-step-2"].private is False
    assert (result.step, result.base_model, result.hub_base_model) == (2, TINY, SMOL_HUB)
    downloads = [done for stage, done, _ in seen if stage == "download"]
    assert downloads and downloads == sorted(downloads) and downloads[-1] > 0
    assert [s for s in seen if s[0] != "download"] == [("upload", 0, result.bytes), ("upload", result.bytes,
                                                        result.bytes), ("done", result.bytes, result.bytes)]
    files = hub.repos["alice-lab/adder-step-2"].files
    config = json.loads(files["adapter_config.json"])
    original = downloaded_adapter(server, job, tmp_path, step=2)
    assert config["base_model_name_or_path"] == SMOL_HUB
    assert files["adapter_model.safetensors"] == (original / "adapter_model.safetensors").read_bytes()
    card = files["README.md"].decode()
    meta = front_matter(card)
    assert meta["base_model"] == SMOL_HUB and f"base_model:adapter:{SMOL_HUB}" in meta["tags"]
    assert "Checkpoint: step 2" in card and f"exported from `{job}/step-2`" in card


def test_export_failures_are_one_clear_line_and_upload_nothing(server, job, hub, tmp_path, scratch):
    before = {name: dict(r.files) for name, r in hub.repos.items()}

    out = cli(server, hub, tmp_path, "--adapter-id", job, "--repository", "alice/x", HF_TOKEN=None)
    assert out.exit_code != 0 and "set HF_TOKEN or pass --api-key" in out.output

    out = cli(server, hub, tmp_path, "--adapter-id", job, "--repository", "alice/x", "--api-key", "hf_wrong")
    assert out.exit_code != 0, out.output
    assert "refused the token (401)" in " ".join(out.output.split())

    out = cli(server, hub, tmp_path, "--adapter-id", job, "--repository", "bob/stolen")
    text = " ".join(out.output.split())
    assert out.exit_code != 0 and "may not create or write repository 'bob/stolen' (403)" in text, text

    out = cli(server, hub, tmp_path, "--adapter-id", f"{job}/step-99", "--repository", "alice/x")
    assert out.exit_code != 0 and "Saved steps: 2, 4" in " ".join(out.output.split())

    out = cli(server, hub, tmp_path, "--adapter-id", job, "--repository", "not-a-repository")
    assert out.exit_code != 0 and "must be '<owner>/<name>'" in out.output

    other = new_org_key(server, "hub-export-other")  # another organization's job is the server's own 404
    with server.client(other) as o:
        message = o.get(f"/fine_tuning/jobs/{job}").json()["error"]["message"]
    out = cli(server, hub, tmp_path, "--adapter-id", job, "--repository", "alice/x", TENFOLD_API_KEY=other)
    assert out.exit_code != 0 and message in " ".join(out.output.split())

    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        with pytest.raises(HubExportError) as err:
            export_to_hub(client, job, "alice/x", token="hf_wrong", endpoint=hub.url)
    assert err.value.status == 401
    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        with pytest.raises(HubExportError, match="could not reach the Hugging Face Hub"):
            export_to_hub(client, job, "alice/x", token=TOKEN, endpoint=f"http://127.0.0.1:{free_port()}")
    assert {name: dict(r.files) for name, r in hub.repos.items()} == before and "alice/x" not in hub.repos
