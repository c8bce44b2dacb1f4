"""The ``tenfold`` console script (``tenfold = tenfold.cli.main:app``).

Owns: the root Typer app, the global error policy (any ``TenfoldError`` or ``CliError`` becomes one red
``error: …`` line and exit code 1, no traceback), and the small commands ``serve``, ``login``, ``models``
and ``usage``. The other nouns live in their own modules and are registered here.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from tenfold.cli import admin as admin_cmd
from tenfold.cli import batches as batches_cmd
from tenfold.cli import demo as demo_cmd
from tenfold.cli import deployments as deployments_cmd
from tenfold.cli import files as files_cmd
from tenfold.cli import hub as hub_cmd
from tenfold.cli import jobs as jobs_cmd
from tenfold.cli import serving
from tenfold.cli import usage as usage_cmd
from tenfold.cli import weights as weights_cmd
from tenfold.cli.output import (
    CliError,
    client,
    dim,
    fmt_time,
    fmt_usd,
    print_error,
    print_json,
    print_table,
    say,
)
from tenfold.sdk import Tenfold, TenfoldError
from tenfold.sdk.credentials import resolve, save_credentials


class TenfoldGroup(TyperGroup):
    """Root group: renders expected failures as one line instead of a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (TenfoldError, CliError) as exc:
            print_error(str(exc))
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=TenfoldGroup,
    help="tenfold: fine-tune LoRA adapters, deploy any checkpoint, serve them behind an OpenAI-compatible API.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # never print API keys from local variables
    add_completion=False,
)

JSON_OPT = typer.Option(False, "--json", help="Print the raw JSON answer.")


def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    role: str = typer.Option("all", "--role", help="all (api + engine + worker) | api (api + engine) | worker | "
                                              "engine (a replica of a dedicated deployment; started by the "
                                              "controller)"),
) -> None:
    """Run the tenfold server (api + engine + worker by default) in this process."""
    from tenfold.server import (
        serve as run_server,  # lazy: pulls in torch and the web stack
    )

    run_server(host=host, port=port, role=role)


def login(
    api_key: str = typer.Option(..., "--api-key", help="A tenfold API key (tf-…)."),
    base_url: str | None = typer.Option(None, "--base-url", help="Server URL (default: env, saved, or local)."),
) -> None:
    """Check an API key against the server and save it for later commands (mode 0600)."""
    resolved = resolve(base_url, api_key)
    api = Tenfold(base_url=resolved.base_url, api_key=api_key)
    try:
        me = api.me()
    except TenfoldError as exc:
        raise CliError(f"login failed at {resolved.base_url}: {exc}") from None
    path = save_credentials(resolved.base_url, api_key)
    admin = " (admin)" if me.is_admin else ""
    say(f"logged in to {resolved.base_url} as organization {me.organization_id}{admin}", "bold green")
    dim(f"credentials saved to {path} (mode 0600); TENFOLD_API_KEY / TENFOLD_BASE_URL override them")


def models(as_json: bool = JSON_OPT) -> None:
    """List the models you can call: base models and your deployed adapters."""
    page = client().models.list()
    if as_json:
        print_json(page)
        return
    rows = [(m.id, "adapter" if m.parent else "base", m.root, m.checkpoint, m.owned_by) for m in page.data]
    print_table(None, ["model", "kind", "base", "checkpoint", "owned by"], rows, "no models")


def usage(
    limit: int = typer.Option(20, "--limit", help="Most recent N requests (max 100)."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = JSON_OPT,
) -> None:
    """Show recent per-request token usage and cost."""
    page = client().usage.list(limit=limit, model=model)
    if as_json:
        print_json(page)
        return
    records = page.data
    rows = [(fmt_time(r.created_at, short=True), r.model, r.checkpoint, r.prompt_tokens, r.cached_tokens,
             r.completion_tokens, fmt_usd(r.cost_micro_usd)) for r in records]
    print_table(None, ["time", "model", "checkpoint", "prompt", "cached", "completion", "cost"], rows,
                "no usage yet")
    if records:
        total = [sum(getattr(r, k) for r in records)
                 for k in ("prompt_tokens", "cached_tokens", "completion_tokens", "cost_micro_usd")]
        dim(f"{len(records)} requests: {total[0]} prompt ({total[1]} cached) + {total[2]} completion tokens, "
            f"{fmt_usd(total[3])}")


@usage_cmd.app.callback(invoke_without_command=True)
def _usage_group(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", help="Most recent N requests (max 100)."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = JSON_OPT,
) -> None:
    """Show recent per-request token usage and cost (subcommands: summary, export, limit)."""
    if ctx.invoked_subcommand is None:
        usage(limit=limit, model=model, as_json=as_json)


# Registration order is the order `tenfold --help` lists them: the workflow, top to bottom.
app.command("serve")(serve)
app.command("login")(login)
app.add_typer(files_cmd.app, name="files")
app.command("train")(jobs_cmd.train)
app.add_typer(jobs_cmd.app, name="jobs")
app.command("checkpoints")(jobs_cmd.checkpoints)
app.command("download")(weights_cmd.download)
app.command("export")(hub_cmd.export)
jobs_cmd.app.command("delete")(weights_cmd.delete_job)
app.command("eval")(jobs_cmd.evaluate)
app.command("deploy")(serving.deploy)
app.add_typer(serving.adapters_app, name="adapters")
app.command("undeploy")(serving.undeploy)
app.command("chat")(serving.chat)
app.command("models")(models)
app.add_typer(usage_cmd.app, name="usage")
app.add_typer(batches_cmd.app, name="batches")
app.add_typer(deployments_cmd.app, name="deployments")
app.add_typer(admin_cmd.orgs_app, name="orgs")
app.add_typer(admin_cmd.keys_app, name="keys")
app.command("demo")(demo_cmd.demo)

if __name__ == "__main__":
    app()
