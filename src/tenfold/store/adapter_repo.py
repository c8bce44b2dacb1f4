"""Queries over imported adapters: keyword-only functions like ``repo``'s.

Owns: organization scoping (another organization's adapter reads as missing), lookup by ``adp-…`` id or by
the optional name (unique within an organization), and which deployments serve an imported adapter. Does
not own: sessions, validation or files on disk.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenfold.store.repo import new_id
from tenfold.store.tables import AdapterDeployment, DeploymentAdapter, ImportedAdapter


def new_adapter_id() -> str:
    return new_id("adp-", 10)


def create_imported(s: Session, *, adapter_id: str, organization_id: str, name: str | None, base_model: str,
                    source: str, path: str, digest: str, rank: int, target_modules: list[str],
                    nbytes: int) -> ImportedAdapter:
    row = ImportedAdapter(id=adapter_id, organization_id=organization_id, name=name, base_model=base_model,
                          source=source, path=path, digest=digest, rank=rank, target_modules=target_modules,
                          bytes=nbytes, created_at=time.time())
    s.add(row)
    s.flush()
    return row


def get_imported(s: Session, *, organization_id: str, key: str) -> ImportedAdapter | None:
    """By ``adp-…`` id, else by name, within the organization."""
    column = ImportedAdapter.id if key.startswith("adp-") else ImportedAdapter.name
    return s.scalar(select(ImportedAdapter).where(ImportedAdapter.organization_id == organization_id,
                                                  column == key))


def name_taken(s: Session, *, organization_id: str, name: str) -> bool:
    return s.scalar(select(ImportedAdapter.seq).where(ImportedAdapter.organization_id == organization_id,
                                                      ImportedAdapter.name == name)) is not None


def list_imported(s: Session, *, organization_id: str) -> list[ImportedAdapter]:
    return list(s.scalars(select(ImportedAdapter).where(ImportedAdapter.organization_id == organization_id)
                          .order_by(ImportedAdapter.seq.desc())))


def serving(s: Session, *, organization_id: str, adapter_id: str) -> list[str]:
    """The model names an imported adapter is deployed under (``adp-…`` and ``adp-…#dep-…``)."""
    shared = s.scalars(select(AdapterDeployment.model).where(
        AdapterDeployment.organization_id == organization_id, AdapterDeployment.model == adapter_id))
    dedicated = s.scalars(select(DeploymentAdapter.deployment_id).where(
        DeploymentAdapter.organization_id == organization_id, DeploymentAdapter.model == adapter_id))
    return [*shared, *(f"{adapter_id}#{d}" for d in dedicated)]


def delete_imported(s: Session, *, row: ImportedAdapter) -> None:
    s.delete(row)
    s.flush()
