"""``tenfold login``, error rendering, files, chat and listings, run in-process against the real server."""

from __future__ import annotations

import json
import stat

from tests.cli.conftest import free_port

ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                  {"role": "assistant", "content": f"ANSWER: {a + b}"}]}
    for a in range(1, 4) for b in range(1, 3)
]


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def one_error_line(result) -> str:
    """The run failed with exit 1 and printed exactly one ``error:`` line and no traceback."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_login_verifies_then_saves_0600_and_later_commands_use_it(cli, server, config_dir):
    bad = cli("login", "--api-key", "tf-not-a-key", "--base-url", server.base_url)
    line = one_error_line(bad)
    assert "login failed" in line and "Invalid API key" in line
    assert not (config_dir / "credentials.json").exists()

    root = server.base_url.removesuffix("/v1")
    ok = cli("login", "--api-key", server.api_key, "--base-url", root)  # without /v1 works too
    assert ok.exit_code == 0, ok.output
    path = config_dir / "credentials.json"
    assert str(path) in ok.output.replace("\n", "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"base_url": root, "api_key": server.api_key}

    listed = cli("models", "--json")  # no env: the saved credentials are used
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["object"] == "list"

    overridden = cli("models", TENFOLD_API_KEY="tf-env-wins")  # env beats the file
    assert "Invalid API key" in one_error_line(overridden)


def test_bad_key_is_one_red_line_and_exit_1(cli, server):
    line = one_error_line(cli("files", "list", TENFOLD_BASE_URL=server.base_url, TENFOLD_API_KEY="tf-bad"))
    assert "Invalid API key" in line


def test_missing_key_says_how_to_log_in(cli, server):
    line = one_error_line(cli("jobs", "list", TENFOLD_BASE_URL=server.base_url))
    assert "tenfold login" in line


def test_unreachable_server_is_one_line(cli):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(cli("models", TENFOLD_BASE_URL=url, TENFOLD_API_KEY="tf-x"))
    assert f"not reachable at {url}" in line and "tenfold serve" in line


def test_not_found_is_one_line(cli, as_admin):
    line = one_error_line(cli("jobs", "get", "ftjob-missing", **as_admin))
    assert "ftjob-missing" in line
    one_error_line(cli("checkpoints", "ftjob-missing", **as_admin))
    one_error_line(cli("undeploy", "ftjob-missing", **as_admin))


def test_files_upload_then_list(cli, as_admin, tmp_path):
    path = tmp_path / "cli-train.jsonl"
    write_jsonl(path, ROWS)
    up = cli("files", "upload", str(path), **as_admin)
    assert up.exit_code == 0, up.output
    file_id = up.output.split(" as ", 1)[1].split()[0]
    assert file_id.startswith("file-") and f"{path.stat().st_size} bytes" in up.output
    got = json.loads(cli("files", "get", file_id, "--json", **as_admin).stdout)
    assert f"{len(ROWS)} examples, {got['n_tokens']} tokens (tiny-random-llama tokenizer)" in up.output

    table = cli("files", "list", "--limit", "100", **as_admin)
    assert table.exit_code == 0
    row = next(line for line in table.output.splitlines() if file_id in line)
    assert "cli-train.jsonl" in row and "fine-tune" in row and str(got["n_tokens"]) in row
    assert f"{got['n_tokens']} tokens" in cli("files", "get", file_id, **as_admin).output

    raw = json.loads(cli("files", "list", "--limit", "100", "--json", **as_admin).stdout)
    assert file_id in [f["id"] for f in raw["data"]]
    assert got["bytes"] == path.stat().st_size


def test_invalid_upload_names_the_line(cli, as_admin, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"messages": []}\n')
    line = one_error_line(cli("files", "upload", str(path), **as_admin))
    assert "line 2" in line
    assert "no such file" in one_error_line(cli("files", "upload", str(tmp_path / "nope.jsonl"), **as_admin))


def test_chat_prints_answer_then_usage(cli, server, as_admin):
    base = json.loads(cli("models", "--json", **as_admin).stdout)["data"][0]["id"]
    result = cli("chat", base, "-m", "Say hi.", "--max-tokens", "5", "--system", "Be brief.", **as_admin)
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").splitlines()
    usage_line = lines[-1]
    assert usage_line.startswith("usage: ") and "checkpoint" not in usage_line

    # The printed numbers are the ones the server metered for this request.
    record = json.loads(cli("usage", "--limit", "1", "--json", **as_admin).stdout)["data"][0]
    assert record["model"] == base
    expected = (f"usage: {record['prompt_tokens']} prompt ({record['cached_tokens']} cached) + "
                f"{record['completion_tokens']} completion tokens")
    assert usage_line == expected

    streamed = cli("chat", base, "-m", "Say hi.", "--max-tokens", "5", "--system", "Be brief.", "--stream", **as_admin)
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.splitlines()[:-1] == lines[:-1]  # same answer, greedy
    assert streamed.stdout.splitlines()[-1].startswith("usage: ")

    table = cli("usage", "--limit", "2", **as_admin)
    assert table.exit_code == 0 and "2 requests:" in table.output


def test_chat_unknown_model_is_one_line(cli, as_admin):
    one_error_line(cli("chat", "ftjob-nothing-here", "-m", "hi", **as_admin))


def test_models_and_adapters_tables(cli, as_admin):
    models = cli("models", **as_admin)
    assert models.exit_code == 0 and "base" in models.output
    adapters = cli("adapters", "--json", **as_admin)
    assert adapters.exit_code == 0 and json.loads(adapters.stdout)["object"] == "list"
