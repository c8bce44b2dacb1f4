"""The model object of ``/v1/models``: the base model and the caller's deployed adapters.

Owns: ``Model`` (OpenAI's ``id``, ``object``, ``created``, ``owned_by`` plus ``root``, ``parent`` and the
serving ``checkpoint``). The list is a ``tenfold.types.common.ListResponse[Model]``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.types.common import ResponseModel


class Model(ResponseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str = Field(description="the base model")
    parent: str | None = Field(default=None, description="the base model of an adapter; null for a base model")
    checkpoint: str | None = Field(default=None, description="the checkpoint an adapter serves, if not its final")


__all__ = ["Model"]
