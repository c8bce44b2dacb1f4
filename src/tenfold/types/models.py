"""The model object of ``/v1/models``: the base model and the caller's deployed adapters.

Owns: ``Model`` (OpenAI's ``id``, ``object``, ``created``, ``owned_by`` plus ``root``, ``parent`` and the
serving ``checkpoint``), and ``HUB_BASE_MODELS``: the Hugging Face Hub name of each registered base-model
name the server accepts (the server's registry reads it for its aliases; the SDK for ``export_to_hub``).
The list is a ``tenfold.types.common.ListResponse[Model]``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.types.common import ResponseModel

# Registered base-model names (what a job's ``model`` and an adapter's ``base_model_name_or_path`` hold) that
# are published on the Hugging Face Hub, and their Hub names. Names not here (``tiny-random-llama``, local
# folders) have no Hub name; a Hugging Face id (``owner/name``) is its own Hub name.
HUB_BASE_MODELS: dict[str, str] = {
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


class Model(ResponseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str = Field(description="the base model")
    parent: str | None = Field(default=None, description="the base model of an adapter; null for a base model")
    checkpoint: str | None = Field(default=None, description="the checkpoint an adapter serves, if not its final")


__all__ = ["Model", "HUB_BASE_MODELS"]
