"""Merging a LoRA adapter into its base model: ``python -m tenfold.training.merge --base DIR --adapter DIR
--out DIR`` writes a full model folder (safetensors, ``config.json``, generation config, tokenizer with its
chat template) that loads with ``transformers`` alone.

Owns: the merge (float32, ``merge_and_unload``) and writing the folder atomically (a temporary name, then a
rename), in a process of its own so the server never holds a second copy of a model. Does not own: where
merged folders are kept or served (``tenfold.jobs.weights``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import uuid
from pathlib import Path


def merge(base: Path, adapter: Path, out: Path) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.parent / f".tmp-{out.name}-{uuid.uuid4().hex[:8]}"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        merged.save_pretrained(str(tmp), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(tmp))
        for extra in ("chat_template.jinja", "generation_config.json"):
            if (base / extra).is_file() and not (tmp / extra).exists():
                shutil.copy2(base / extra, tmp / extra)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tenfold.training.merge", description=__doc__)
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--adapter", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    merge(args.base, args.adapter, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
