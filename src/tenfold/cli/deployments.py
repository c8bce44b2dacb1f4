"""``tenfold deployments create|list|get|update|delete|undelete``: dedicated deployments over the SDK.

Owns: the commands, their flags (the seed's: ``-g/--gpu`` hardware profile, ``--min-replicas``,
``--max-replicas``, ``--target-rps``, ``--target-latency``, ``--stabilisation``, ``-t/--hf-token``,
``-w/--wait``, ``--display-name``) and ``--wait``'s progress display, which ends with the cold start (request
to first healthy replica). Does not own: replicas (the server's controller).
"""

from __future__ import annotations

import time

import typer
from rich.live import Live

from tenfold.cli.output import client, console, dim, fmt_time, print_json, print_table, say
from tenfold.types.deployments import Deployment

app = typer.Typer(help="Dedicated deployments: replicas of a base model, autoscaled, billed per replica-second.",
                  no_args_is_help=True)
JSON_OPT = typer.Option(False, "--json", help="Print the raw JSON answer.")


def _status(d: Deployment) -> str:
    healthy = sum(1 for r in d.replicas if r.healthy)
    return (f"{d.id}  {d.state}  {healthy}/{d.desired_replicas} replicas healthy  ({d.base_model} on "
            f"{d.hardware_profile}, engine {d.engine})")


def _show(d: Deployment) -> None:
    say(_status(d), "bold")
    if d.display_name:
        say(f"  name: {d.display_name}")
    say(f"  replicas {d.min_replicas}..{d.max_replicas}, target {d.target_rps:g} requests/s per replica, p95 time to "
        f"first token {d.target_latency_p95_ms:g} ms, scale-down window {d.scale_down_window_s:g} s")
    if d.failure_reason:
        say(f"  failed: {d.failure_reason}", "red")
    if d.last_decision:
        say(f"  autoscaler ({fmt_time(d.last_decision.at)}): {d.last_decision.replicas} replica(s): "
            f"{d.last_decision.reason}")
    if d.adapters:
        say(f"  adapters: {', '.join(d.adapters)}")
    print_table(None, ["replica", "state", "healthy", "pid", "endpoint", "placement", "in flight", "adapters",
                       "started"],
                [(r.id, r.state, "yes" if r.healthy else "no", r.pid or "", r.endpoint or "", r.placement or "",
                  r.in_flight, ", ".join(r.adapters), fmt_time(r.started_at)) for r in d.replicas],
                "no replicas running")
    dim(f"call it: tenfold chat {d.id} -m \"Hello!\"   (or model \"<job>#{d.id}\" after "
        f"`tenfold deploy <job> --deployment {d.id}`)")


def _wait(deployment_id: str, started: float) -> Deployment:
    api = client(timeout=60.0)
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        d = api.deployments.wait(deployment_id, poll=0.5, timeout=1800,
                                 on_update=lambda x: live.update(f"waiting: {_status(x)}  "
                                                                 f"{time.monotonic() - started:.0f} s"))
    if d.state == "FAILED":
        raise typer.Exit(_failed(d))
    say(f"cold start: {time.monotonic() - started:.1f} s to the first healthy replica", "green")
    return d


def _failed(d: Deployment) -> int:
    say(f"{d.id} FAILED: {d.failure_reason}", "red")
    return 1


def create(
    base_model: str = typer.Argument(..., help="A known name, a local folder or a Hugging Face id."),
    gpu: str | None = typer.Option(None, "--gpu", "-g", help="Hardware profile: cpu, or gpu.<kind> where present "
                                                                "(default: a GPU if the server has one, else cpu)."),
    min_replicas: int = typer.Option(1, "--min-replicas", help="Replicas kept warm (0 allows scale to zero)."),
    max_replicas: int = typer.Option(1, "--max-replicas", help="Most replicas the autoscaler may run."),
    target_rps: float = typer.Option(10.0, "--target-rps", help="Requests per second per replica."),
    target_latency: float = typer.Option(5000.0, "--target-latency", help="p95 time to first token, ms."),
    stabilisation: float = typer.Option(300.0, "--stabilisation", help="Scale-down window, seconds."),
    hf_token: str | None = typer.Option(None, "--hf-token", "-t", help="Fetch a gated model with this token "
                                                                       "(used once, never stored)."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Block until a replica is healthy; print the cold start."),
    display_name: str | None = typer.Option(None, "--display-name"),
    engine: str = typer.Option("tenfold", "--engine", "-e", help="tenfold (its own engine) or vllm (vLLM replicas; "
                                                               "the server needs vLLM installed)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Create a dedicated deployment of BASE_MODEL."""
    started = time.monotonic()
    d = client(timeout=600.0).deployments.create(
        base_model=base_model, hardware_profile=gpu, min_replicas=min_replicas, max_replicas=max_replicas,
        target_rps=target_rps, target_latency_p95_ms=target_latency, scale_down_window_s=stabilisation,
        display_name=display_name, hf_token=hf_token, engine=engine)
    if wait and d.desired_replicas > 0:
        d = _wait(d.id, started)
    if as_json:
        print_json(d)
        return
    _show(d)


def list_deployments(include_deleted: bool = typer.Option(False, "--all", help="Also deleted ones."),
                     as_json: bool = JSON_OPT) -> None:
    """List your deployments."""
    page = client().deployments.list(include_deleted=include_deleted, limit=100)
    if as_json:
        print_json(page)
        return
    print_table(None, ["deployment", "state", "base model", "hardware", "replicas", "name", "created"],
                [(d.id, d.state, d.base_model, d.hardware_profile,
                  f"{sum(1 for r in d.replicas if r.healthy)}/{d.desired_replicas} ({d.min_replicas}..{d.max_replicas})",
                  d.display_name or "", fmt_time(d.created_at)) for d in page.data], "no deployments")


def get(deployment_id: str, as_json: bool = JSON_OPT) -> None:
    """Show a deployment, its replicas and the autoscaler's last decision."""
    d = client().deployments.retrieve(deployment_id)
    if as_json:
        print_json(d)
        return
    _show(d)


def update(
    deployment_id: str,
    min_replicas: int | None = typer.Option(None, "--min-replicas"),
    max_replicas: int | None = typer.Option(None, "--max-replicas"),
    target_rps: float | None = typer.Option(None, "--target-rps"),
    target_latency: float | None = typer.Option(None, "--target-latency"),
    stabilisation: float | None = typer.Option(None, "--stabilisation"),
    display_name: str | None = typer.Option(None, "--display-name"),
    as_json: bool = JSON_OPT,
) -> None:
    """Change a deployment's limits and targets (a FAILED one is tried again)."""
    d = client().deployments.update(deployment_id, min_replicas=min_replicas, max_replicas=max_replicas,
                                    target_rps=target_rps, target_latency_p95_ms=target_latency,
                                    scale_down_window_s=stabilisation, display_name=display_name)
    if as_json:
        print_json(d)
        return
    _show(d)


def delete(deployment_id: str, force: bool = typer.Option(False, "--force", help="Detach its adapters first."),
           as_json: bool = JSON_OPT) -> None:
    """Stop a deployment's replicas and delete it (undeletable for a grace period)."""
    d = client().deployments.delete(deployment_id, force=force)
    if as_json:
        print_json(d)
        return
    say(f"{d.id} {d.state}: its replicas are stopping", "bold")
    if d.undelete_until:
        dim(f"undo until {fmt_time(d.undelete_until)}: tenfold deployments undelete {d.id}")


def undelete(deployment_id: str, as_json: bool = JSON_OPT) -> None:
    """Bring back a deleted deployment within its grace period."""
    d = client().deployments.undelete(deployment_id)
    if as_json:
        print_json(d)
        return
    _show(d)


app.command("create")(create)
app.command("list")(list_deployments)
app.command("get")(get)
app.command("update")(update)
app.command("delete")(delete)
app.command("undelete")(undelete)
