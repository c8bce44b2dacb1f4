"""``tenfold train`` → ``checkpoints`` → ``deploy`` → ``chat`` → ``undeploy``, and ``tenfold demo``,
run in-process against real servers (tiny model)."""

from __future__ import annotations

import json
import re

import httpx
import pytest


def test_train_follow_then_deploy_a_checkpoint_and_chat(cli, as_admin, train_file, base_model):
    trained = cli("train", str(train_file), "--model", base_model, "--epochs", "1", "--batch-size", "4",
                  "--learning-rate", "0.005", "--lora-r", "4", "--lora-alpha", "8", "--checkpoint-every", "1",
                  "--seed", "5", **as_admin)
    assert trained.exit_code == 0, trained.output
    job_id = re.search(r"created job (ftjob-\S+)", trained.output).group(1)
    assert "Ctrl-C stops following, not the job" in trained.output
    assert "Checkpoint saved at step 1" in trained.output  # message events printed above the bar
    assert re.search(r"\b2/2\b", trained.output)  # the bar reached total steps (8 rows / batch 4)
    assert f"job {job_id} succeeded" in trained.output
    assert trained.output.rstrip().endswith(f"next: tenfold deploy {job_id}")

    job = json.loads(cli("jobs", "get", job_id, "--json", **as_admin).stdout)
    assert job["hyperparameters"]["lora_r"] == 4 and job["hyperparameters"]["checkpoint_every"] == 1
    assert job["seed"] == 5
    assert job_id in cli("jobs", "list", **as_admin).output

    table = cli("checkpoints", job_id, **as_admin)
    assert table.exit_code == 0
    assert f"{job_id}/step-2" in table.output and f"{job_id}/step-1" in table.output

    events = cli("jobs", "events", job_id, **as_admin)
    assert events.exit_code == 0 and "step 2/2" in events.output

    dry = cli("deploy", f"{job_id}/step-1", "--dry-run", **as_admin)
    assert dry.exit_code == 0 and "dry run: would deploy" in dry.output
    deployed = cli("deploy", f"{job_id}/step-1", **as_admin)
    assert deployed.exit_code == 0, deployed.output
    assert f"endpoint: {as_admin['TENFOLD_BASE_URL']}" in deployed.output
    assert f'tenfold chat {job_id} -m "Hello!"' in deployed.output
    assert "from openai import OpenAI" in deployed.output and f'model="{job_id}"' in deployed.output

    adapters = cli("adapters", **as_admin)
    assert f"{job_id}/step-1" in adapters.output

    chat = cli("chat", job_id, "-m", "What is 1 plus 1?", "--max-tokens", "4",
               "--expected-checkpoint", "step-1", **as_admin)
    assert chat.exit_code == 0, chat.output
    assert chat.stdout.splitlines()[-1].endswith(f"· checkpoint {job_id}/step-1")
    conflict = cli("chat", job_id, "-m", "hi", "--expected-checkpoint", "step-2", **as_admin)
    assert conflict.exit_code == 1 and f"{job_id}/step-1" in conflict.output

    assert cli("undeploy", job_id, **as_admin).exit_code == 0
    assert job_id not in cli("adapters", **as_admin).output


def test_no_follow_then_events_follow(cli, as_admin, train_file, base_model):
    started = cli("train", str(train_file), "--model", base_model, "--epochs", "1", "--batch-size", "8",
                  "--no-follow", **as_admin)
    assert started.exit_code == 0, started.output
    job_id = re.search(r"created job (ftjob-\S+)", started.output).group(1)
    assert f"tenfold jobs follow {job_id}" in started.output
    followed = cli("jobs", "events", job_id, "--follow", **as_admin)
    assert followed.exit_code == 0, followed.output
    assert f"job {job_id} succeeded" in followed.output


def test_bad_hyperparameter_is_one_line(cli, as_admin, train_file, base_model):
    result = cli("train", str(train_file), "--model", base_model, "--epochs", "0", **as_admin)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: ")


def test_demo_against_a_running_server(cli, server, base_model):
    result = cli("demo", "--base-url", server.base_url, "--api-key", server.api_key, "--poll", "0.3")
    assert result.exit_code == 0, result.output
    for headline in ("1/5 using the server", "2/5 uploading", "3/5 training", "4/5 deploying", "5/5 asking"):
        assert headline in result.output
    from tenfold.training.demo_task import load_demo_eval

    n = len(load_demo_eval())
    assert re.search(rf"format followed: base \d+/{n}, adapter \d+/{n}", result.output)
    assert f"base ({base_model}) tokens:" in result.output and "adapter (ftjob-" in result.output


def test_demo_starts_and_stops_its_own_server(cli, tmp_path, model_cache):
    from tests.cli.conftest import free_port

    port = free_port()
    home = tmp_path / "demo-home"
    result = cli("demo", "--home", str(home), "--port", str(port), "--poll", "0.3",
                 TENFOLD_BASE_MODEL="tiny-random-llama", TENFOLD_MODEL_CACHE=str(model_cache),
                 TENFOLD_TORCH_THREADS="1", TENFOLD_WORKER_POLL_SECONDS="0.2")
    assert result.exit_code == 0, result.output + (home / "server.log").read_text(errors="replace")
    assert "1/5 starting server" in result.output and "format followed:" in result.output
    assert (home / "admin_key").is_file()
    with pytest.raises(httpx.TransportError):  # stopped at the end
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
