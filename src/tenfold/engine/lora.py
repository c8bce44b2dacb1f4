"""Adapter residency for the simple engine: validate PEFT LoRA folders, load them into one ``PeftModel``
under their digest, keep at most ``max_resident`` of them (LRU, never evicting one in use).

Owns: adapter validation (files, type, base model, target modules, shapes) and the resident set.
Every method except ``validate`` must run on the engine thread (they mutate the model).
Does not own: the forward pass or scheduling (``simple``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from tenfold.engine.types import AdapterError, AdapterRef
from tenfold.models.registry import is_same_base

log = logging.getLogger(__name__)

BASE_ADAPTER_NAME = "__base__"  # PEFT's name for "no adapter" in mixed-adapter forwards
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<part>lora_[AB])(?:\.[^.]+)?\.weight$")


def peft_name(digest: str) -> str:
    """The PEFT adapter name for a digest: the digest itself, made safe for module names ('.' is not)."""
    if _SAFE_NAME.match(digest):
        return digest
    return "adapter_" + hashlib.sha256(digest.encode()).hexdigest()[:32]


class AdapterManager:
    def __init__(self, model: Any, *, model_path: Path, base_name: str, max_resident: int) -> None:
        if max_resident < 1:
            raise ValueError(f"max_resident_adapters must be >= 1, got {max_resident}")
        self._base = model
        self._peft: Any = None
        self._model_path = Path(model_path)
        self._base_name = base_name
        self.max_resident = max_resident
        self._resident: OrderedDict[str, int] = OrderedDict()  # digest -> active request count
        self._shapes: dict[str, tuple[int, int]] = {
            name: (module.in_features, module.out_features)
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }

    # ---- validation (any thread) -------------------------------------------------------------
    def validate(self, ref: AdapterRef) -> dict:
        """Check the folder can serve on this base model; return its adapter config. Raises ``AdapterError``."""
        path = Path(ref.path)
        if not path.is_dir():
            raise AdapterError(f"adapter {ref.digest}: folder {path} does not exist")
        config_file = path / "adapter_config.json"
        if not config_file.is_file():
            raise AdapterError(f"adapter {ref.digest}: {path} has no adapter_config.json; is it a PEFT adapter folder?")
        try:
            config = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise AdapterError(f"adapter {ref.digest}: adapter_config.json is not valid JSON: {exc}") from exc
        if str(config.get("peft_type", "")).upper() != "LORA":
            raise AdapterError(
                f"adapter {ref.digest}: peft_type is {config.get('peft_type')!r}; only LORA adapters are served"
            )
        declared = config.get("base_model_name_or_path") or ""
        if declared and not is_same_base(declared, base_name=self._base_name, model_path=self._model_path):
            raise AdapterError(
                f"adapter {ref.digest} was trained on base model {declared!r}, but this engine serves "
                f"{self._base_name!r}; deploy it on a deployment of {declared!r} or retrain it on {self._base_name!r}"
            )
        self._check_targets(ref, config.get("target_modules"))
        weights = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
        if not weights:
            raise AdapterError(f"adapter {ref.digest}: {path} has no weights ({' or '.join(WEIGHT_FILES)})")
        if weights[0].suffix == ".safetensors":
            self._check_shapes(ref, weights[0])
        return config

    def _check_targets(self, ref: AdapterRef, targets: Any) -> None:
        names = list(self._shapes)
        if targets is None or targets == "all-linear":
            return
        if isinstance(targets, str):
            matched = any(re.fullmatch(targets, name) for name in names)
        else:
            wanted = set(targets)
            matched = any(name in wanted or name.rsplit(".", 1)[-1] in wanted for name in names)
        if not matched:
            suffixes = sorted({name.rsplit(".", 1)[-1] for name in names})
            raise AdapterError(
                f"adapter {ref.digest}: target_modules {targets!r} match no module of base model "
                f"{self._base_name!r}; its linear modules are {suffixes}"
            )

    def _check_shapes(self, ref: AdapterRef, weights: Path) -> None:
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except Exception as exc:  # corrupt or truncated file
            raise AdapterError(f"adapter {ref.digest}: cannot read {weights.name}: {exc}") from exc
        lora = [(m, key) for key in shapes if (m := _LORA_KEY.match(key))]
        if not lora:
            raise AdapterError(f"adapter {ref.digest}: {weights.name} holds no LoRA weights")
        for match, key in lora:
            module = match["module"]
            if module not in self._shapes:
                raise AdapterError(f"adapter {ref.digest}: weight {key} targets {module!r}, which the base model lacks")
            in_features, out_features = self._shapes[module]
            shape = shapes[key]
            expected_ok = shape[1] == in_features if match["part"] == "lora_A" else shape[0] == out_features
            if len(shape) != 2 or not expected_ok:
                raise AdapterError(
                    f"adapter {ref.digest}: weight {key} has shape {list(shape)}, which does not fit "
                    f"{module} ({in_features} -> {out_features}) of base model {self._base_name!r}"
                )

    # ---- residency (engine thread) -----------------------------------------------------------
    @property
    def model(self) -> Any:
        """The module to call: the ``PeftModel`` once an adapter was loaded, else the base model."""
        return self._peft if self._peft is not None else self._base

    def forward_kwargs(self, digest: str | None) -> dict:
        """Arguments that make the next (batch-of-one) forward use ``digest``'s adapter, or none.

        An adapter request selects its adapter with ``set_adapter`` (about 19 ms per switch, so callers
        group requests by adapter) and runs the plain PEFT forward, markedly cheaper than PEFT's
        mixed-batch ``adapter_names`` path (72 vs 105 ms per decode step, bench/RESULTS.md). A base request
        uses ``adapter_names=["__base__"]``: entering and leaving ``disable_adapter()`` costs about 67 ms.
        """
        if self._peft is None:
            if digest is not None:
                raise AdapterError(f"adapter {digest} is not resident")
            return {}
        if digest is None:
            return {"adapter_names": [BASE_ADAPTER_NAME]}
        name = peft_name(digest)
        if self._peft.active_adapter != name:
            self._peft.set_adapter(name)
        return {}

    def resident(self) -> list[str]:
        """Digests in LRU order (least recently used first)."""
        return list(self._resident)

    def is_resident(self, digest: str) -> bool:
        return digest in self._resident

    def load(self, ref: AdapterRef) -> None:
        """Make ``ref`` resident (idempotent), then evict over the limit."""
        if ref.digest in self._resident:
            self._resident.move_to_end(ref.digest)
            return
        if ref.digest == BASE_ADAPTER_NAME:
            raise AdapterError(f"adapter digest {BASE_ADAPTER_NAME!r} is reserved")
        self.validate(ref)
        try:
            if self._peft is None:
                from peft import PeftModel

                self._peft = PeftModel.from_pretrained(
                    self._base, str(ref.path), adapter_name=peft_name(ref.digest), is_trainable=False
                )
                self._peft.eval()
            else:
                self._peft.load_adapter(str(ref.path), adapter_name=peft_name(ref.digest), is_trainable=False)
        except Exception as exc:
            self._discard(ref.digest)
            raise AdapterError(f"adapter {ref.digest}: PEFT could not load {ref.path}: {exc}") from exc
        self._resident[ref.digest] = 0
        log.info("loaded adapter %s from %s (%d resident)", ref.digest, ref.path, len(self._resident))
        self.evict_over_limit(keep=ref.digest)

    def acquire(self, digest: str) -> None:
        self._resident[digest] += 1
        self._resident.move_to_end(digest)

    def release(self, digest: str) -> None:
        if digest in self._resident:
            self._resident[digest] = max(0, self._resident[digest] - 1)

    def evict_over_limit(self, keep: str | None = None) -> None:
        """Drop least recently used idle adapters (never ``keep``) until at most ``max_resident`` remain."""
        while len(self._resident) > self.max_resident:
            idle = next((d for d, refs in self._resident.items() if refs == 0 and d != keep), None)
            if idle is None:
                return  # all in use: over the limit until requests finish
            self.unload(idle)

    def unload(self, digest: str) -> None:
        if self._resident.get(digest, 0) > 0:
            raise AdapterError(f"adapter {digest} is in use by active requests")
        self._resident.pop(digest, None)
        self._discard(digest)
        log.info("evicted adapter %s", digest)

    def _discard(self, digest: str) -> None:
        name = peft_name(digest)
        if self._peft is None or name not in self._peft.peft_config:
            return
        if len(self._peft.peft_config) == 1:  # PEFT cannot delete its last adapter: unwrap the base
            self._base = self._peft.unload()
            self._peft = None
        else:
            self._peft.delete_adapter(name)
