"""Exporting a job's adapter to a Hugging Face Hub repository, client side: ``export_to_hub``.

The adapter travels tenfold server → this machine → the Hub, so the Hub token never reaches the tenfold
server. Steps: check the Hub token (``whoami``), read the job, its files and metrics from the tenfold server,
download the adapter (``GET /v1/fine_tuning/jobs/{id}/content?checkpoint_type=adapter``), extract it into a
temporary folder, set ``adapter_config.json``'s ``base_model_name_or_path`` to the base model's Hub name,
write a ``README.md`` model card, create the repository (private unless ``private=False``; an existing one
is reused) and upload the folder in one commit. The temporary folder is removed whatever happens.

Owns: parsing ``<job>`` / ``<job>/step-N``, the Hub name of the base model (``HUB_BASE_MODELS`` from
``tenfold.types``, a Hugging Face id as itself, or the caller's ``base_model``), the model card, safe
extraction of the archive, and turning Hub failures (refused token, missing or forbidden repository,
unreachable Hub, offline mode) into ``HubExportError`` with what to do instead. Does not own: the download
itself (``resources.downloads``), the Hub protocol (``huggingface_hub``, imported on first use; it honours
``HF_ENDPOINT``), or any display (the CLI's ``tenfold export``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.sdk.errors import NotFoundError, TenfoldError
from tenfold.types.models import HUB_BASE_MODELS

if TYPE_CHECKING:
    from tenfold.sdk.client import Tenfold
    from tenfold.types.files import FileObject
    from tenfold.types.jobs import FineTuningJob, JobMetrics

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_ADAPTER_ID = re.compile(r"^(?P<job>[^/\s]+)(?:/step-(?P<step>\d+))?$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HF_ID = _REPOSITORY
TOKENS_URL = "https://huggingface.co/settings/tokens"

# on_progress(stage, done, total): stage "download" (bytes so far, total unknown), "upload" (0 then the
# bytes of the folder once committed), "done" (the same numbers as the last "upload").
Progress = Callable[[str, int, "int | None"], None]


class HubExportError(TenfoldError):
    """The export could not be done; the message says why and what to do. ``status`` is the Hub's HTTP status
    when the Hub refused (401 token, 403 not permitted, 404 repository), else None."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(status, message, type="hub_export_error")


@dataclass(frozen=True)
class HubExport:
    """What ``export_to_hub`` did."""

    repository: str
    url: str  # the repository's page on the Hub
    commit_url: str | None
    private: bool
    job_id: str
    step: int | None  # None: the final adapter (or the newest checkpoint when there is none)
    base_model: str  # the tenfold name of the base model
    hub_base_model: str | None  # its Hub name, written into adapter_config.json and the card; None if unknown
    files: tuple[str, ...]
    bytes: int


def parse_adapter_id(adapter_id: str) -> tuple[str, int | None]:
    """``"ftjob-1"`` → ``("ftjob-1", None)``; ``"ftjob-1/step-4"`` → ``("ftjob-1", 4)``."""
    m = _ADAPTER_ID.match(adapter_id.strip()) if adapter_id else None
    if m is None:
        raise ValueError(f"adapter id {adapter_id!r} is not '<job id>' or '<job id>/step-<N>' (e.g. ftjob-abc/step-4); "
                         "list a job's checkpoints with `tenfold checkpoints <job id>`")
    return m.group("job"), int(m.group("step")) if m.group("step") else None


def hub_base_model(name: str) -> str | None:
    """The Hub name of base model ``name``: a registered name's (``HUB_BASE_MODELS``), a Hugging Face id as
    itself, else None (the tiny test model, a local folder)."""
    name = (name or "").strip()
    if name in HUB_BASE_MODELS:
        return HUB_BASE_MODELS[name]
    if _HF_ID.match(name) and not name.startswith((".", "/", "~")):
        return name
    return None


def export_to_hub(client: Tenfold, adapter_id: str, repository: str, *, token: str | None = None,
                  private: bool = True, base_model: str | None = None, endpoint: str | None = None,
                  commit_message: str | None = None, on_progress: Progress | None = None) -> HubExport:
    """Copy ``adapter_id`` (``<job>`` or ``<job>/step-N``) of ``client``'s server into the Hub repository
    ``repository`` (``owner/name``) as a PEFT adapter with a model card.

    ``token`` is a Hugging Face write token (default: ``HF_TOKEN``); ``private=False`` makes a new repository
    public (an existing repository keeps its visibility). ``base_model`` overrides the Hub name recorded for
    the base model (needed when the job's base model has none, e.g. a local folder). ``endpoint`` defaults to
    ``HF_ENDPOINT``, then https://huggingface.co. Raises ``HubExportError`` for Hub problems and the SDK's
    errors (e.g. ``NotFoundError`` for an unknown job) for tenfold problems.
    """
    job_id, step = parse_adapter_id(adapter_id)
    if not _REPOSITORY.match(repository or ""):
        raise ValueError(f"repository {repository!r} must be '<owner>/<name>' (a Hugging Face user or organization "
                         "and a model name)")
    token = token or os.environ.get("HF_TOKEN") or None
    if not token:
        raise HubExportError(f"no Hugging Face token: set HF_TOKEN or pass one (a write token from {TOKENS_URL})")
    if base_model is not None and not _HF_ID.match(base_model):
        raise ValueError(f"base_model {base_model!r} must be a Hugging Face id like 'HuggingFaceTB/SmolLM2-135M'")
    job = client.fine_tuning.jobs.retrieve(job_id)  # NotFoundError here is the server's own 404 message
    if step is not None and f"{job_id}/step-{step}" not in job.checkpoints:
        saved = ", ".join(c.rsplit("-", 1)[-1] for c in job.checkpoints) or "none"
        raise NotFoundError(404, f"Job {job_id} has no checkpoint at step {step}. Saved steps: {saved}.",
                            code="checkpoint_not_found")
    api = _hub_api(token, endpoint)
    _check_token(api, token)
    hub_base = base_model or hub_base_model(job.model)
    progress = on_progress or (lambda stage, done, total: None)
    with tempfile.TemporaryDirectory(prefix="tenfold-export-") as tmp:
        archive = client.fine_tuning.jobs.download(
            job_id, output=Path(tmp) / "download" / "adapter.tar.zst", checkpoint_step=step,
            checkpoint_type="adapter", on_progress=lambda done: progress("download", done, None))
        folder = extract_adapter(archive, Path(tmp) / "adapter")
        archive.unlink()
        config = _rewrite_config(folder / "adapter_config.json", hub_base)
        card = model_card(job, step=step, repository=repository, hub_base=hub_base, config=config,
                          files=_files(client, job), metrics=_metrics(client, job_id))
        (folder / "README.md").write_text(card, encoding="utf-8")
        files = tuple(sorted(p.name for p in folder.iterdir()))
        size = sum((folder / f).stat().st_size for f in files)
        progress("upload", 0, size)
        with _hub_errors(repository, api.endpoint):
            repo_url = api.create_repo(repository, repo_type="model", private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repository, repo_type="model", folder_path=str(folder),
                                     commit_message=commit_message or f"Upload {adapter_id} from tenfold")
            private_now = bool(getattr(api.repo_info(repository, repo_type="model"), "private", private))
        progress("upload", size, size)
        progress("done", size, size)
    return HubExport(repository=repository, url=str(repo_url), commit_url=getattr(info, "commit_url", None),
                     private=private_now, job_id=job_id, step=step, base_model=job.model, hub_base_model=hub_base,
                     files=files, bytes=size)


def extract_adapter(archive: Path, dest: Path) -> Path:
    """Extract a ``.tar.zst`` whose single top folder holds the adapter files into ``dest``; return that folder.
    Extraction uses tarfile's ``data`` filter (no absolute paths, links out of ``dest`` or devices)."""
    import zstandard

    dest.mkdir(parents=True, exist_ok=True)
    with open(archive, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as z, \
            tarfile.open(fileobj=z, mode="r|") as tar:
        tar.extractall(dest, filter="data")
    tops = [p for p in dest.iterdir()]
    if len(tops) != 1 or not tops[0].is_dir():
        raise HubExportError(f"the downloaded archive should hold one folder, not {sorted(p.name for p in tops)}")
    folder = tops[0]
    missing = [f for f in ADAPTER_FILES if not (folder / f).is_file()]
    if missing:
        raise HubExportError(f"the downloaded adapter lacks {', '.join(missing)}; is the server older than this SDK?")
    for extra in [p for p in folder.iterdir() if p.name not in ADAPTER_FILES]:
        shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    return folder


def _rewrite_config(path: Path, hub_base: str | None) -> dict[str, Any]:
    config = json.loads(path.read_text())
    if hub_base:
        config["base_model_name_or_path"] = hub_base
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


def _files(client: Tenfold, job: FineTuningJob) -> list[tuple[str, str, FileObject | None]]:
    out = []
    for role, file_id in (("training", job.training_file), ("validation", job.validation_file)):
        if not file_id:
            continue
        try:
            out.append((role, file_id, client.files.retrieve(file_id)))
        except NotFoundError:  # deleted since; the card still names the id
            out.append((role, file_id, None))
    return out


def _metrics(client: Tenfold, job_id: str) -> JobMetrics | None:
    try:
        return client.fine_tuning.jobs.metrics(job_id)
    except NotFoundError:
        return None


def _last(metrics: JobMetrics | None, field: str, step: int | None) -> tuple[int, float] | None:
    points = [p for p in (metrics.data if metrics else []) if getattr(p, field, None) is not None
              and (step is None or p.step <= step)]
    return (points[-1].step, float(getattr(points[-1], field))) if points else None


def model_card(job: FineTuningJob, *, step: int | None, repository: str, hub_base: str | None,
               config: Mapping[str, Any], files: list[tuple[str, str, FileObject | None]],
               metrics: JobMetrics | None) -> str:
    """The ``README.md`` of the exported repository: YAML front matter (``base_model``, ``library_name:
    peft``, tags) and a body with the base model, data, hyperparameters, final losses and how to load it."""
    method = job.method.type
    tags = ([f"base_model:adapter:{hub_base}"] if hub_base else []) + ["lora", "peft", "tenfold",
                                                                        "sft" if method == "supervised" else method]
    front = (["---"] + ([f"base_model: {hub_base}"] if hub_base else []) + ["library_name: peft",
             "pipeline_tag: text-generation", "tags:"] + [f"- {t}" for t in tags] + ["---", ""])
    adapter = job.id if step is None else f"{job.id}/step-{step}"
    base_line = (f"`{hub_base}` (tenfold name `{job.model}`)" if hub_base and hub_base != job.model
                 else f"`{job.model}`" + ("" if hub_base else " (not published on the Hugging Face Hub)"))
    how = "supervised fine-tuning" if method == "supervised" else "DPO"
    lines = [f"# {repository.split('/', 1)[1]}", "",
             f"A LoRA adapter trained with tenfold ({how}), exported from `{adapter}`.", "",
             f"- Base model: {base_line}",
             f"- Checkpoint: {'final adapter' if step is None else f'step {step}'}",
             f"- LoRA: r={config.get('r')}, alpha={config.get('lora_alpha')}, dropout={config.get('lora_dropout')}, "
             f"target modules: {', '.join(sorted(config.get('target_modules') or [])) or '-'}", "",
             "## Data", ""]
    for role, file_id, f in files:
        if f is None:
            lines.append(f"- {role}: `{file_id}` (deleted)")
        else:
            tokens = f", {f.n_tokens} tokens" if f.n_tokens is not None else ""
            lines.append(f"- {role}: `{f.filename}` ({f.n_examples} examples{tokens})")
    if job.trained_tokens is not None:
        lines.append(f"- trained tokens (all epochs): {job.trained_tokens}")
    for field in ("estimated_trained_tokens", "estimated_cost_micro_usd"):  # estimate fields, when the job has them
        value = (job.model_extra or {}).get(field)
        if value is not None:
            lines.append(f"- {field.replace('_', ' ')}: {value}")
    lines += ["", "## Hyperparameters", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(job.hyperparameters.items())]
    lines += [f"| seed | {job.seed} |", "", "## Final losses", ""]
    train, valid = _last(metrics, "train_loss", step), _last(metrics, "valid_loss", step)
    lines.append(f"- train loss: {train[1]:.4f} (step {train[0]})" if train else "- train loss: not logged")
    lines.append(f"- validation loss: {valid[1]:.4f} (step {valid[0]})" if valid else "- validation loss: none")
    load_base = hub_base or "<the base model's folder or Hub id>"
    lines += ["", "## How to load it", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f'base = AutoModelForCausalLM.from_pretrained("{load_base}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{load_base}")',
              f'model = PeftModel.from_pretrained(base, "{repository}")', "```", ""]
    return "\n".join(front + lines)


# -- the Hub ------------------------------------------------------------------------------------------------

def _hub_api(token: str, endpoint: str | None) -> Any:
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:  # pragma: no cover - a dependency of tenfold
        raise HubExportError(f"exporting needs the huggingface_hub package ({exc}); pip install huggingface_hub") \
            from None
    return HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)


def _check_token(api: Any, token: str) -> None:
    with _hub_errors(None, api.endpoint):
        me = api.whoami(token=token)
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubExportError(f"the Hugging Face token of {me.get('name')!r} is read-only; create a write token at "
                             f"{TOKENS_URL}", status=403)


class _hub_errors:
    """Context manager: huggingface_hub's exceptions → ``HubExportError`` with a clear message."""

    def __init__(self, repository: str | None, endpoint: str) -> None:
        self.repository, self.endpoint = repository, endpoint

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, TenfoldError):
            return False
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        repo = f"repository {self.repository!r}" if self.repository else "the Hub"
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, (HfHubHTTPError, OfflineModeIsEnabled)):
            cause = cause.__cause__  # e.g. "Error while uploading '…' to the Hub" wrapping the Hub's answer
        exc = cause or exc
        if isinstance(exc, OfflineModeIsEnabled):
            raise HubExportError("HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it to export") from None
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            status = exc.response.status_code
            detail = (exc.server_message or "").strip().splitlines()
            said = f" (the Hub said: {detail[0]})" if detail else ""
            if (status == 401 and self.repository is None) or "Invalid credentials" in (exc.server_message or ""):
                raise HubExportError(f"the Hugging Face Hub at {self.endpoint} refused the token (401){said}: check "
                                     f"HF_TOKEN or --api-key; tokens are at {TOKENS_URL}", status=401) from None
            if status in (401, 404):
                raise HubExportError(f"{repo} was not found or this token cannot see it ({status}){said}; check the "
                                     "owner/name spelling and the token's permissions", status=status) from None
            if status == 403:
                raise HubExportError(f"this token may not create or write {repo} (403){said}; use a write token of "
                                     "that user, or of a member of that organization", status=403) from None
            raise HubExportError(f"the Hugging Face Hub answered {status} for {repo}{said}", status=status) from None
        name = type(exc).__name__
        if any(word in name for word in ("Connect", "Timeout", "Transport", "Network")):
            raise HubExportError(f"could not reach the Hugging Face Hub at {self.endpoint}: {exc}") from None
        return False


__all__ = ["export_to_hub", "HubExport", "HubExportError", "parse_adapter_id", "hub_base_model", "model_card",
           "extract_adapter"]
