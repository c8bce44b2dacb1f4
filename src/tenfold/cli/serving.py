"""``tenfold deploy``, ``tenfold adapters`` (list, import, delete), ``tenfold undeploy`` and ``tenfold chat``.

Owns: deploying a job or checkpoint and telling the user how to call it (a ``tenfold chat`` line and an
openai SDK snippet), the adapters table, and chat output (answer, then a dim usage/checkpoint line).
Does not own: loading adapters or generating (the server).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from tenfold.cli.output import (
    CliError,
    client,
    console,
    dim,
    fmt_time,
    print_json,
    print_table,
    say,
    usage_counts,
)
from tenfold.types.completions import CompletionUsage

JSON_OPT = typer.Option(False, "--json", help="Print the raw JSON answer.")

SNIPPET = '''from openai import OpenAI
client = OpenAI(base_url="{endpoint}", api_key="<your tenfold API key>")
resp = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "Hello!"}}],
)
print(resp.choices[0].message.content)'''


def deploy(
    target: str = typer.Argument(..., help="JOB (final adapter) or JOB/step-N (a checkpoint)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would happen; change nothing."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Run a short smoke generation after loading."),
    deployment: str | None = typer.Option(None, "--deployment", "-d",
                                          help="Serve it on this dedicated deployment (as JOB#dep-…)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Serve a job's adapter (or one checkpoint of it) under the model name JOB (JOB#dep-… on a deployment)."""
    api = client()
    if dry_run:
        plan = api.adapters.plan(model=target, verify=verify, deployment=deployment)
        if as_json:
            print_json(plan)
            return
        say(f"dry run: would deploy {plan.source} as model {plan.would_serve_as} on {plan.base_model}", "bold")
        replaces = plan.would_replace
        say(f"would replace: {replaces}" if replaces else "would replace: nothing (new deployment)")
        dim(f"deploy for real: tenfold deploy {target}")
        return
    adapter = api.adapters.create(model=target, verify=verify, deployment=deployment)
    if as_json:
        print_json(adapter)
        return
    model, endpoint, source = adapter.model, adapter.endpoint, adapter.source
    verified = "verified" if adapter.verified else "not verified"
    say(f"deployed {source} as model {model} on {adapter.base_model} ({verified})", "bold green")
    if adapter.replaced:
        say(f"replaced: {adapter.replaced}")
    say(f"endpoint: {endpoint}    model: {model}")
    say("\ntry it:")
    say(f'  tenfold chat {model} -m "Hello!"')
    say("\nfrom Python (openai SDK):")
    console.print(Text(SNIPPET.format(endpoint=endpoint, model=model)), soft_wrap=True)


adapters_app = typer.Typer(help="List adapters (deployed and imported); import adapters trained elsewhere.",
                           no_args_is_help=False)


@adapters_app.callback(invoke_without_command=True)
def _adapters_group(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """List your adapters: deployed ones with their endpoints, and imported ones (subcommands: import, delete)."""
    if ctx.invoked_subcommand is None:
        adapters(as_json=as_json)


def adapters(as_json: bool = False) -> None:
    page = client().adapters.list()
    if as_json:
        print_json(page)
        return
    rows = [(a.model, a.name or "", a.source if a.status == "deployed" else f"imported ({a.imported_from})",
             a.base_model, a.endpoint if a.status == "deployed" else "tenfold deploy " + a.model,
             fmt_time(a.created_at)) for a in page.data]
    print_table(None, ["model", "name", "source", "base model", "endpoint", "since"], rows,
                "nothing deployed: tenfold deploy JOB (or tenfold adapters import DIR)")


@adapters_app.command("import")
def import_adapter(
    source: str | None = typer.Argument(None, help="A PEFT adapter folder, or a .tar / .tar.zst of one."),
    hub_id: str | None = typer.Option(None, "--hub-id", help="Or a Hugging Face Hub repository (the server "
                                                             "fetches it)."),
    revision: str | None = typer.Option(None, "--revision", help="Hub revision (with --hub-id)."),
    base: str | None = typer.Option(None, "--base", help="The base model it is for (default: the one its "
                                                         "adapter_config.json names)."),
    name: str | None = typer.Option(None, "--name", help="A name, unique within your organization."),
    as_json: bool = JSON_OPT,
) -> None:
    """Import an adapter trained elsewhere; it is checked against the base model, then deployable."""
    if (source is None) == (hub_id is None):
        raise CliError("pass a folder or archive, or --hub-id (one of them)")
    if source is not None:
        if not Path(source).expanduser().exists():
            raise CliError(f"{source} is neither an adapter folder nor an archive")
        dim(f"packing and uploading {source} …")
    adapter = client(timeout=3600.0).adapters.import_(source, hub_id=hub_id, revision=revision, base_model=base,
                                                      name=name)
    if as_json:
        print_json(adapter)
        return
    say(f"imported {adapter.model}" + (f" ({adapter.name})" if adapter.name else "")
        + f": rank {adapter.rank}, {', '.join(adapter.target_modules or [])}, for {adapter.base_model}", "bold green")
    say(f"deploy it: tenfold deploy {adapter.model}")


@adapters_app.command("delete")
def delete_adapter(model: str = typer.Argument(..., help="An imported adapter's adp-… id or name.")) -> None:
    """Delete an imported adapter that is deployed nowhere (its files go)."""
    api = client()
    adapter = api.adapters.retrieve(model)
    if adapter.status == "deployed":
        raise CliError(f"{adapter.model} is deployed; undeploy it first: tenfold undeploy {adapter.model}")
    api.adapters.delete(model)
    say(f"deleted {adapter.model}")


def undeploy(model: str = typer.Argument(..., help="The deployed model name (a job id).")) -> None:
    """Stop serving an adapter (the job and its checkpoints stay)."""
    client().adapters.delete(model)
    say(f"undeployed {model}")


def chat(
    model: str = typer.Argument(..., help="A base model name or a deployed job id."),
    message: str = typer.Option(..., "--message", "-m", help="The user message."),
    system: str | None = typer.Option(None, "--system", help="System prompt for this request only."),
    max_tokens: int = typer.Option(512, "--max-tokens"),
    temperature: float = typer.Option(0.0, "--temperature"),
    stream: bool = typer.Option(False, "--stream/--no-stream", help="Print tokens as they arrive."),
    expected_checkpoint: str | None = typer.Option(
        None, "--expected-checkpoint", help="Fail (409) unless this checkpoint serves; '' requires none."
    ),
) -> None:
    """Send one chat message and print the answer, token usage and serving checkpoint."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]
    completions = client().chat.completions
    usage: CompletionUsage | None = None
    if stream:
        with completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=temperature,
                                expected_checkpoint=expected_checkpoint, stream=True,
                                stream_options={"include_usage": True}) as chunks:
            checkpoint = chunks.checkpoint
            for chunk in chunks:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        typer.echo(choice.delta.content, nl=False)
        typer.echo("")
    else:
        raw = completions.with_raw_response.create(model=model, messages=messages, max_tokens=max_tokens,
                                                   temperature=temperature, expected_checkpoint=expected_checkpoint)
        answer, checkpoint = raw.parse(), raw.checkpoint
        usage = answer.usage
        console.print(Text(answer.choices[0].message.content or ""), soft_wrap=True)
    prompt, cached, completion = usage_counts(usage)
    line = f"usage: {prompt} prompt ({cached} cached) + {completion} completion tokens"
    if checkpoint:
        line += f" · checkpoint {checkpoint}"
    dim(line)
