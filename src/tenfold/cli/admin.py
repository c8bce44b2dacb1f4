"""``tenfold orgs create`` and ``tenfold keys create``: admin commands over the SDK."""

from __future__ import annotations

import typer

from tenfold.cli.output import client, dim, print_json, say

orgs_app = typer.Typer(help="Organizations (admin key needed).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (admin key needed).", no_args_is_help=True)


@orgs_app.command("create")
def create_org(name: str = typer.Argument(..., help="Organization name."),
               as_json: bool = typer.Option(False, "--json", help="Print the raw JSON answer.")) -> None:
    """Create an organization; then give it a key with `tenfold keys create --org <id>`."""
    org = client().organizations.create(name=name)
    if as_json:
        print_json(org)
        return
    say(f"created organization {org.id} ({org.name})", "bold green")
    dim(f"next: tenfold keys create --org {org.id}")


@keys_app.command("create")
def create_key(org: str | None = typer.Option(None, "--org", help="Organization id (default: yours)."),
               name: str = typer.Option("", "--name", help="A label for the key."),
               admin: bool = typer.Option(False, "--admin", help="Make it an admin key."),
               as_json: bool = typer.Option(False, "--json", help="Print the raw JSON answer.")) -> None:
    """Create an API key; the secret is printed once and stored only hashed on the server."""
    key = client().api_keys.create(organization_id=org, name=name, is_admin=admin)
    if as_json:
        print_json(key)
        return
    say(f"created key {key.id} for {key.organization_id}" + (" (admin)" if key.is_admin else ""), "bold green")
    say(str(key.key))
    dim("shown only once: store it now, e.g. `tenfold login --api-key <key>`")
