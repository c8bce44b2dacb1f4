"""Importing adapters trained elsewhere: a PEFT LoRA folder sent as a ``.tar`` / ``.tar.zst`` archive, or a
Hugging Face Hub repository, becomes an ``adp-…`` adapter of the caller's organization, deployable and callable
like a job's adapter.

Owns: choosing the base model it is for (``base_model``, else the base its ``base_model_name_or_path`` names
among the bases this server serves), validating it against that base before anything is stored (the engine's
``validate_adapter``: LoRA only, architecture, target modules, shapes, rank, dtype; ``modules_to_save`` and
embedding / lm_head weights refused by name), the optional name (unique within the organization), storing
the two serving files under ``artifacts/adapters/<id>/``, listing, deleting (refused while deployed) and
``resolve`` (an ``adp-…`` id or a name → an ``AdapterSource``). Does not own: archive safety
(``tenfold.artifacts.archive``), deploying (``tenfold.deployments.adapters``) or wire shapes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import BinaryIO

from tenfold.artifacts.archive import ArchiveError, extract_safely, scratch_dir
from tenfold.context import Principal, ServerContext
from tenfold.engine.lora import validate_adapter
from tenfold.engine.shapes import model_shape, read_config
from tenfold.engine.types import AdapterError, AdapterRef
from tenfold.errors import Conflict, InvalidRequest, TooLarge, Unavailable, not_found
from tenfold.jobs.refs import AdapterSource
from tenfold.models.registry import is_same_base, resolve_base_model
from tenfold.store import adapter_repo
from tenfold.store import deployment_repo as drepo
from tenfold.store.tables import ImportedAdapter
from tenfold.training.checkpoints import SERVING_FILES, adapter_digest

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HINT = "A PEFT LoRA adapter folder holds adapter_config.json and adapter_model.safetensors (model.save_pretrained)."


def served_bases(c: ServerContext, p: Principal) -> list[str]:
    """The base models an adapter can serve on for this caller: the server's, then its deployments'."""
    bases = [c.settings.base_model]
    with c.db.session() as s:
        deployments, _ = drepo.list_deployments(s, organization_id=p.organization_id, limit=1000, after=None)
    bases += [d.base_model for d in deployments if d.state not in ("DELETING", "DELETED")]
    return list(dict.fromkeys(bases))


def _check_name(c: ServerContext, p: Principal, name: str | None) -> None:
    if name is None:
        return
    if not _NAME.match(name) or name.startswith(("adp-", "ftjob-", "dep-")):
        raise InvalidRequest(f"Adapter name {name!r} must be 1-64 letters, digits, '.', '_' or '-', start with a "
                             "letter or digit, and not start with adp-, ftjob- or dep-.", param="name",
                             code="invalid_name")
    with c.db.session() as s:
        if adapter_repo.name_taken(s, organization_id=p.organization_id, name=name):
            raise Conflict(f"Your organization already has an adapter named {name!r}; pick another name or "
                           f"delete that one (`tenfold adapters delete {name}`).", param="name", code="name_taken")


def _config(folder: Path) -> dict:
    names = sorted(p.name for p in folder.iterdir())[:8]
    if not (folder / "adapter_config.json").is_file():
        raise InvalidRequest(f"This is not a PEFT adapter: it has no adapter_config.json (it holds {names}). "
                             f"{_HINT}", param="file", code="invalid_adapter")
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise InvalidRequest(f"adapter_config.json is not valid JSON: {e}. {_HINT}", param="file",
                             code="invalid_adapter") from None
    if not isinstance(config, dict):
        raise InvalidRequest(f"adapter_config.json must hold a JSON object. {_HINT}", param="file",
                             code="invalid_adapter")
    if not (folder / "adapter_model.safetensors").is_file():
        extra = " (adapter_model.bin is not accepted: re-save with safe_serialization=True)" if (
            folder / "adapter_model.bin").is_file() else ""
        raise InvalidRequest(f"This is not a servable PEFT adapter: it has no adapter_model.safetensors{extra}. "
                             f"{_HINT}", param="file", code="invalid_adapter")
    return config


def _choose_base(c: ServerContext, p: Principal, declared: str, base_model: str | None) -> tuple[str, Path]:
    """The base the adapter is for, and its folder."""
    if base_model is None:
        bases = served_bases(c, p)
        matches = []
        for base in bases:
            path = resolve_base_model(base, models_dir=c.settings.models_dir)
            if not declared or is_same_base(declared, base_name=base, model_path=path):
                matches.append((base, path))
        if not matches:
            raise InvalidRequest(
                f"The adapter was trained on '{declared}', which this server does not serve (it serves "
                f"{', '.join(repr(b) for b in bases)}). Pass base_model (--base) if it is the same model under "
                "another name, or create a deployment of that base first.", param="base_model",
                code="base_model_mismatch")
        return matches[0]
    try:
        return base_model, resolve_base_model(base_model, models_dir=c.settings.models_dir)
    except ValueError as e:
        raise InvalidRequest(f"base_model {base_model!r} cannot be loaded here: {e}", param="base_model",
                             code="base_model_unavailable") from None


def adapter_rank(config: dict) -> int:
    """The largest LoRA rank a PEFT ``adapter_config.json`` declares (``r`` and any ``rank_pattern``)."""
    ranks = [config.get("r") or 0, *(config.get("rank_pattern") or {}).values()]
    return max(int(r) for r in ranks if isinstance(r, int))


def _store(c: ServerContext, p: Principal, folder: Path, *, source: str, base_model: str | None,
           name: str | None) -> ImportedAdapter:
    """Validate the extracted ``folder`` and keep its serving files as a new adapter; ``folder`` is consumed."""
    config = _config(folder)
    declared = str(config.get("base_model_name_or_path") or "")
    base, base_path = _choose_base(c, p, declared, base_model)
    if declared and not is_same_base(declared, base_name=base, model_path=base_path):
        raise InvalidRequest(f"The adapter was trained on '{declared}', but base_model is '{base}'. Import it for "
                             "the base it was trained on.", param="base_model", code="base_model_mismatch")
    shape = model_shape(read_config(base_path))
    adapter_id = adapter_repo.new_adapter_id()
    try:
        validate_adapter(AdapterRef(digest=adapter_id, path=folder), shape=shape, base_name=base,
                         model_path=base_path)
    except AdapterError as e:
        raise InvalidRequest(f"The adapter cannot serve on '{base}': {str(e).removeprefix(f'adapter {adapter_id}: ')}."
                             " Nothing was stored.", param="file", code="invalid_adapter") from None
    dest = c.artifacts.path(f"adapters/{adapter_id}")
    dest.mkdir(parents=True)
    try:
        for file in SERVING_FILES:
            os.replace(folder / file, dest / file)
        nbytes = sum((dest / f).stat().st_size for f in SERVING_FILES)
        targets = config.get("target_modules")
        targets = [targets] if isinstance(targets, str) else sorted(targets or [])
        with c.db.session() as s:
            if name is not None and adapter_repo.name_taken(s, organization_id=p.organization_id, name=name):
                raise Conflict(f"Your organization already has an adapter named {name!r}; pick another name.",
                               param="name", code="name_taken")
            return adapter_repo.create_imported(
                s, adapter_id=adapter_id, organization_id=p.organization_id, name=name, base_model=base,
                source=source, path=str(dest), digest=adapter_digest(dest), rank=adapter_rank(config),
                target_modules=targets, nbytes=nbytes)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def import_adapter(c: ServerContext, p: Principal, *, data: BinaryIO | None, size: int | None, filename: str | None,
                   hub_id: str | None, revision: str | None, base_model: str | None,
                   name: str | None) -> ImportedAdapter:
    """An upload (``data``, ``size`` bytes) or a Hub repository (``hub_id``): exactly one."""
    if (data is None) == (hub_id is None):
        raise InvalidRequest("Send exactly one of file (a .tar or .tar.zst of a PEFT adapter folder) or hub_id.",
                             param="file", code="missing_adapter" if data is None else "ambiguous_adapter")
    if hub_id is not None:
        return import_hub(c, p, repo_id=hub_id, revision=revision, base_model=base_model, name=name)
    if size is not None and size > c.settings.max_upload_bytes:
        raise TooLarge(f"The archive is {size} bytes; the upload limit is {c.settings.max_upload_bytes} bytes "
                       "(TENFOLD_MAX_UPLOAD_BYTES). Nothing was stored.", param="file", code="file_too_large")
    return import_archive(c, p, data=data, filename=filename or "adapter.tar", base_model=base_model, name=name)


def import_archive(c: ServerContext, p: Principal, *, data: BinaryIO, filename: str, base_model: str | None,
                   name: str | None) -> ImportedAdapter:
    """An uploaded ``.tar`` / ``.tar.zst`` of a PEFT folder (at its root or in one top folder)."""
    _check_name(c, p, name)
    scratch = scratch_dir(c.artifacts.path("adapters/.incoming"))
    try:
        try:
            folder = extract_safely(data, scratch / "x", max_bytes=c.settings.max_upload_bytes)
        except ArchiveError as e:
            raise InvalidRequest(f"{filename}: {e}. Send a .tar or .tar.zst of a PEFT adapter folder "
                                 "(`tar --zstd -cf adapter.tar.zst -C DIR .`).", param="file",
                                 code="invalid_archive") from None
        return _store(c, p, folder, source=f"upload:{filename}", base_model=base_model, name=name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def import_hub(c: ServerContext, p: Principal, *, repo_id: str, revision: str | None, base_model: str | None,
               name: str | None) -> ImportedAdapter:
    """A Hub repository's ``adapter_config.json`` and ``adapter_model.safetensors`` (token: ``HF_TOKEN`` of the
    server process, for private repositories)."""
    if not _HUB_ID.match(repo_id):
        raise InvalidRequest(f"hub_id {repo_id!r} is not a Hugging Face repository id like 'owner/name'.",
                             param="hub_id", code="invalid_hub_id")
    _check_name(c, p, name)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    scratch = scratch_dir(c.artifacts.path("adapters/.incoming"))
    try:
        for file in SERVING_FILES:
            try:
                hf_hub_download(repo_id, file, revision=revision, local_dir=scratch)
            except LocalEntryNotFoundError:
                raise Unavailable(f"The Hugging Face Hub is not reachable from this server (HF_HUB_OFFLINE or no "
                                  f"network), so {repo_id} cannot be fetched. Download it where the Hub is "
                                  f"reachable and upload the folder: `tenfold adapters import DIR`.",
                                  retry_after=60) from None
            except (RepositoryNotFoundError, GatedRepoError):
                raise InvalidRequest(f"Hub repository {repo_id!r} was not found or this server may not read it "
                                     "(private repositories need HF_TOKEN on the server).", param="hub_id",
                                     code="hub_repository_not_found") from None
            except RevisionNotFoundError:
                raise InvalidRequest(f"Hub repository {repo_id!r} has no revision {revision!r}.",
                                     param="revision", code="hub_revision_not_found") from None
            except EntryNotFoundError:
                raise InvalidRequest(f"Hub repository {repo_id!r} has no {file}; it is not a PEFT adapter "
                                     f"repository. {_HINT}", param="hub_id", code="invalid_adapter") from None
            except HfHubHTTPError as e:
                raise Unavailable(f"The Hugging Face Hub answered an error for {repo_id}: {e}", retry_after=60
                                  ) from None
        source = f"hf:{repo_id}" + (f"@{revision}" if revision else "")
        return _store(c, p, scratch, source=source, base_model=base_model, name=name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def list_imported(c: ServerContext, p: Principal) -> list[ImportedAdapter]:
    with c.db.session() as s:
        return adapter_repo.list_imported(s, organization_id=p.organization_id)


def delete(c: ServerContext, p: Principal, key: str) -> ImportedAdapter:
    """Delete an imported adapter that is deployed nowhere, with its files."""
    with c.db.session() as s:
        row = adapter_repo.get_imported(s, organization_id=p.organization_id, key=key)
        if row is None:
            raise not_found("adapter", key, hint="`tenfold adapters` lists yours.")
        serving = adapter_repo.serving(s, organization_id=p.organization_id, adapter_id=row.id)
        if serving:
            raise Conflict(f"Adapter {row.id} is deployed as {', '.join(serving)}; undeploy it first "
                           f"(`tenfold undeploy {serving[0]}`).", code="adapter_deployed")
        adapter_repo.delete_imported(s, row=row)
    shutil.rmtree(row.path, ignore_errors=True)
    return row


def resolve(c: ServerContext, p: Principal, *, name: str, param: str) -> AdapterSource:
    """An ``adp-…`` id or an adapter name → what to serve."""
    with c.db.session() as s:
        row = adapter_repo.get_imported(s, organization_id=p.organization_id, key=name.strip())
    if row is None:
        raise not_found("adapter", name, param=param,
                        hint="Use a job id, <job id>/step-N, or an imported adapter's adp-… id or name "
                             "(`tenfold adapters`).")
    return AdapterSource(row.id, None, None, row.base_model, row.path, row.digest)
