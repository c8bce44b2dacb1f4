"""``tenfold train --dry-run``, ``--help`` defaults, ``jobs follow|metrics|resume`` and ``tenfold eval``
against the shared test server (tiny model)."""

from __future__ import annotations

import json
import re

from tests.cli.conftest import TRAIN_ROWS


def test_train_help_shows_every_hyperparameter_with_its_default(cli):
    out = cli("train", "--help").output
    flat = " ".join(out.split())
    for flag, default in (("--epochs", "Default: 3."), ("--batch-size", "Default: 8."),
                          ("--lr-scheduler", "Default: linear."), ("--max-seq-length", "Default: 1024."),
                          ("--dpo-beta", "Default: 0.1."), ("--packing", "Default: False."),
                          ("--n-checkpoints", "Default: 0."), ("--dry-run", "")):
        assert flag in out and default in flat, flag


def test_dry_run_then_follow_metrics_eval(cli, as_admin, train_file, base_model, tmp_path):
    dry = cli("train", str(train_file), "--model", base_model, "--epochs", "2", "--batch-size", "4",
              "--dry-run", **as_admin)
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing was created" in dry.output
    tokens = int(re.search(r"training tokens: (\d+)", dry.output).group(1))
    assert tokens > 0 and re.search(r"estimated cost: \$", dry.output)

    bad = cli("train", str(train_file), "--model", base_model, "--lr-scheduler", "step", **as_admin)
    assert bad.exit_code == 1 and "lr_scheduler" in bad.output

    started = cli("train", str(train_file), "--model", base_model, "--epochs", "2", "--batch-size", "4",
                  "--learning-rate", "0.01", "--lora-r", "4", "--n-checkpoints", "2", "--seed", "3",
                  "--no-follow", **as_admin)
    assert started.exit_code == 0, started.output
    job_id = re.search(r"created job (ftjob-\S+)", started.output).group(1)
    followed = cli("jobs", "follow", job_id, **as_admin)
    assert followed.exit_code == 0, followed.output
    assert f"job {job_id} succeeded, {tokens} tokens trained" in followed.output
    assert "Files validated" in followed.output and "Job queued" in followed.output

    metrics = cli("jobs", "metrics", job_id, **as_admin)
    assert metrics.exit_code == 0 and "train loss" in metrics.output
    series = json.loads(cli("jobs", "metrics", job_id, "--json", **as_admin).stdout)["data"]
    assert [m["step"] for m in series] == [1, 2, 3, 4]

    resumed = cli("jobs", "resume", job_id, **as_admin)
    assert resumed.exit_code == 1 and "only failed or cancelled jobs can be resumed" in resumed.output

    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in TRAIN_ROWS[:3]) +
                         json.dumps({"prompt": "What is 9 plus 9?", "expected": "ANSWER: 18"}) + "\n")
    table = cli("eval", job_id, f"{job_id}/step-2", "--file", str(eval_file), "--max-new-tokens", "6", **as_admin)
    assert table.exit_code == 0, table.output
    assert base_model in table.output and f"{job_id}/step-2" in table.output
    result = json.loads(cli("eval", job_id, "--file", str(eval_file), "--max-new-tokens", "6", "--json",
                            **as_admin).stdout)
    rows = {r["model"]: r for r in result["data"]}
    assert list(rows) == [base_model, job_id]
    assert rows[job_id]["loss"] < rows[base_model]["loss"]  # the adapter learned the replies
    assert rows[job_id]["n_with_expected"] == 4 and rows[job_id]["n_examples"] == 4
    assert 0 <= rows[job_id]["exact_match"] <= 1
    missing = cli("eval", "ftjob-nope", "--file", str(eval_file), **as_admin)
    assert missing.exit_code == 1 and "ftjob-nope" in missing.output
