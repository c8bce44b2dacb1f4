"""``tenfold usage summary|export|limit`` (plain ``tenfold usage`` lists recent requests; see ``main``).

Owns: the usage subcommands over the SDK: aggregated summaries, the billing CSV export (at most 31 days
per call, like ``firectl billing export-metrics``) and admin spend limits. Does not own: any arithmetic
(the server sums in integer micro-dollars; the CLI prints what it gets).
"""

from __future__ import annotations

from pathlib import Path

import typer

from tenfold.cli.output import client, dim, print_json, print_table, say

app = typer.Typer(help="Token usage and cost: recent requests (no subcommand), summary, export, spend limits.")


@app.command("export")
def export(
    start_time: str = typer.Option(..., "--start-time",
                                   help="Start (inclusive): YYYY-MM-DD, ISO time or Unix seconds, UTC."),
    end_time: str = typer.Option(..., "--end-time", help="End (exclusive); at most 31 days after the start."),
    filename: Path = typer.Option(Path("usage.csv"), "--filename", help="Where to write the CSV."),
) -> None:
    """Write the billing CSV (one row per request) for [start, end) to a file."""
    body = client().usage.export(start_time, end_time)
    filename.write_text(body)
    n = max(0, len(body.splitlines()) - 1)
    say(f"wrote {n} usage rows to {filename}")


@app.command("summary")
def summary(
    start_time: str = typer.Option(..., "--start-time", help="YYYY-MM-DD, ISO time or Unix seconds (UTC)."),
    end_time: str | None = typer.Option(None, "--end-time", help="Default: now."),
    bucket_width: str = typer.Option("1d", "--bucket-width", help="1d or 1h."),
    group_by: list[str] = typer.Option([], "--group-by", help="model, adapter, checkpoint, api_key_id, "
                                       "deployment_id, usage_type, batch_id, base_model (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw JSON answer."),
) -> None:
    """Usage aggregated per day (or hour), grouped as asked, with exact totals."""
    page = client().usage.summary(start_time, end_time, bucket_width=bucket_width, group_by=group_by or None)
    if as_json:
        print_json(page)
        return
    rows = []
    for b in page.data:
        for r in b.results:
            rows.append((b.start_time, *(getattr(r, g, None) for g in group_by), r.num_model_requests,
                         r.input_tokens, r.input_cached_tokens, r.output_tokens, r.cost_usd))
    print_table(None, ["bucket", *group_by, "requests", "prompt", "cached", "completion", "cost $"], rows,
                "no usage in that range")
    t = page.totals
    dim(f"total: {t.num_model_requests} requests, ${t.cost_usd}")


@app.command("limit")
def limit(
    org: str = typer.Option(..., "--org", help="Organization id."),
    usd: str | None = typer.Option(None, "--usd", help="New monthly limit in dollars (e.g. 100.00); admin only."),
    clear: bool = typer.Option(False, "--clear", help="Remove the limit (admin only)."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw JSON answer."),
) -> None:
    """Show or set an organization's monthly spend limit; requests over it answer 429."""
    limits = client().organizations.spend_limit
    if usd is not None or clear:
        info = limits.update(org, monthly_spend_limit_usd=None if clear else usd)
    else:
        info = limits.retrieve(org)
    if as_json:
        print_json(info)
        return
    shown = f"${info.monthly_spend_limit_usd}" if info.monthly_spend_limit_usd is not None else "none"
    say(f"{org}: monthly limit {shown}, spent ${info.spent_this_month_usd} this month")
