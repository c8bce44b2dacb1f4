"""``tenfold demo``: the product tour, end to end, against a real server.

Owns: the five stages — start (or reuse) a server, upload the bundled training file, train with the demo
hyperparameters while showing the progress bar, deploy the job, then ask the base model and the adapter the
held-out prompts and show them side by side with format scores and token totals. Does not own: the demo
task's data and scoring (``tenfold.training.demo_task``) or the server (``tenfold.cli.local_server``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import typer
from rich.text import Text

from tenfold.cli.follow import follow_job
from tenfold.cli.local_server import LocalServer
from tenfold.cli.output import CliError, console, dim, say, table, usage_counts
from tenfold.sdk import Tenfold

STAGES = 5


def _stage(n: int, headline: str) -> None:
    console.print()
    say(f"{n}/{STAGES} {headline}", "bold cyan")


def _demo_task() -> ModuleType:
    try:
        from tenfold.training import demo_task
    except ImportError as exc:
        raise CliError(f"the demo task is not available (tenfold.training.demo_task): {exc}") from None
    for name in ("demo_train_path", "DEMO_HYPERPARAMETERS", "DEMO_SEED", "DEMO_MAX_NEW_TOKENS", "load_demo_eval",
                 "score_format"):
        if not hasattr(demo_task, name):
            raise CliError(f"tenfold.training.demo_task has no {name}; the demo task is incomplete")
    return demo_task


@contextlib.contextmanager
def _server(home: Path, port: int | None, base_url: str | None, api_key: str | None) -> Iterator[Tenfold]:
    if base_url:
        _stage(1, f"using the server at {base_url}…")
        with Tenfold(base_url=base_url, api_key=api_key, timeout=300.0) as api:
            api.health()
            yield api
        return
    _stage(1, "starting server…")
    with LocalServer(home, port) as server:
        dim(f"TENFOLD_HOME={server.home}  log: {server.log_path}  url: {server.base_url}")
        with Tenfold(base_url=server.base_url, api_key=server.admin_key, timeout=300.0) as api:
            yield api
        say("stopping server…", "dim")


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return str(users[-1] if users else messages[-1].get("content", ""))


def demo(
    home: Path = typer.Option(Path(".demo-home"), "--home", help="TENFOLD_HOME for the demo server."),
    port: int | None = typer.Option(None, "--port", help="Port for the demo server (default: a free one)."),
    base_url: str | None = typer.Option(None, "--base-url", help="Use this running server instead."),
    api_key: str | None = typer.Option(None, "--api-key", help="API key for --base-url."),
    poll: float = typer.Option(1.0, "--poll", help="Seconds between progress polls."),
) -> None:
    """Train an adapter on a small task, deploy it, and compare it with the base model."""
    task = _demo_task()
    evals: list[dict[str, Any]] = list(task.load_demo_eval())
    with _server(home, port, base_url, api_key) as api:
        _stage(2, "uploading the training data…")
        train_path = Path(task.demo_train_path())
        uploaded = api.files.create(file=train_path, purpose="fine-tune")
        say(f"uploaded {train_path.name} as {uploaded.id} ({uploaded.bytes} bytes)")

        _stage(3, "training a LoRA adapter…")
        base_model = api.health().base_model
        hyper = dict(task.DEMO_HYPERPARAMETERS)
        job = api.fine_tuning.jobs.create(model=base_model, training_file=uploaded.id, hyperparameters=hyper,
                                          seed=task.DEMO_SEED)
        dim(f"job {job.id} on {base_model}: " + ", ".join(f"{k}={v}" for k, v in hyper.items()))
        final = follow_job(api, job.id, poll=poll, detach_on_interrupt=False)
        if final.status != "succeeded":
            raise CliError(f"training did not succeed (status {final.status})")

        _stage(4, "deploying the adapter…")
        adapter = api.adapters.create(model=job.id)
        model = adapter.model
        say(f"deployed {model} at {adapter.endpoint}")

        _stage(5, f"asking the base model and the adapter {len(evals)} held-out prompts…")
        _compare(api, base_model, model, evals, task.score_format, task.DEMO_MAX_NEW_TOKENS)


def _compare(api: Tenfold, base_model: str, adapter_model: str, evals: list[dict[str, Any]],
             score_format: Any, max_tokens: int) -> None:
    rows: list[tuple[str, Text, Text]] = []
    scores = {base_model: 0, adapter_model: 0}
    tokens = {base_model: [0, 0, 0], adapter_model: [0, 0, 0]}
    for item in evals:
        answers: list[Text] = []
        for model in (base_model, adapter_model):
            result = api.chat.completions.create(model=model, messages=item["messages"], max_tokens=max_tokens,
                                                 temperature=0.0)
            content = result.choices[0].message.content or ""
            ok = bool(score_format(content))
            scores[model] += ok
            for i, count in enumerate(usage_counts(result.usage)):
                tokens[model][i] += count
            answers.append(Text.assemble(("✓ " if ok else "✗ ", "green" if ok else "red"), content.strip()))
        rows.append((_prompt_text(item["messages"]), answers[0], answers[1]))
    out = table(None, ["prompt", "base answer", "adapter answer"], [])
    for prompt, base_answer, adapter_answer in rows:
        out.add_row(Text(prompt), base_answer, adapter_answer)
    console.print(out)
    for label, model in (("base", base_model), ("adapter", adapter_model)):
        prompt, cached, completion = tokens[model]
        dim(f"{label} ({model}) tokens: {prompt} prompt ({cached} cached) + {completion} completion")
    n = len(evals)
    say(f"format followed: base {scores[base_model]}/{n}, adapter {scores[adapter_model]}/{n}", "bold")
