"""Our SFT recipe (``tenfold.training.sft.run_sft``) vs TRL's ``SFTTrainer``, same LoRA job, side by side.
(Supersedes ``bench/sft_lean_vs_trl.py``.)

Workload: SmolLM2-135M-Instruct on CPU (float32 arms; ``-bf16`` arms in bfloat16 where it wins), the bundled demo set (106 single-turn chats), LoRA r=16
alpha=32 all-linear dropout 0, 8 examples per optimizer step in every arm (TRL without accumulation; tenfold
accumulating its micro-batches within the step, so the same effective batch and the same math), lr 2e-3
linear decay, no warmup, weight decay 0, grad clip 1.0, loss on the assistant reply only.
Arms:
- ``lean``: our recipe with its defaults (padded batches, no gradient checkpointing; on CPU each step runs
  as micro-batches of at most 256 token positions with gradients accumulated, which bounds activation
  memory and leaves the math and the effective batch unchanged).
- ``lean-packed``: the same with ``packing=True`` (the step's examples packed into rows of max_seq_length,
  positions restarting per example, so no attention crosses examples and no padding is computed).
- ``lean-onepass``, ``lean-packed-onepass``: the same two with ``micro_batch_tokens=0`` (the whole step in
  one forward/backward, as before micro-batching), to show what the micro-batches change.
- ``trl``: ``SFTTrainer`` with TRL's defaults for this data except the shared job settings above: that
  means gradient checkpointing ON (TRL's default), no packing, fused AdamW, logging every 10 steps.
- ``trl-nogc``: the same with ``gradient_checkpointing=False`` and logging every step (the fairest TRL).
TRL gets the same chats in its conversational prompt/completion form (prompt = the user turn, completion =
the assistant turn), which turns on ``completion_only_loss``: SmolLM2's template has no
``{% generation %}`` markers, so ``assistant_only_loss=True`` is not available for it.

Each arm runs in its own subprocess (separate peak RSS, no shared warm state); arms alternate order
across repeats. Train time = first optimizer step start to last step end (model loading, tokenization and
the final adapter save are reported apart; "startup" = imports + setup, and since tenfold imports
transformers/peft lazily inside ``run_sft``, only the startup total compares across arms). Tokens = non-pad tokens in the batches processed, counted by
each arm on its own batches.

    .venv/bin/python bench/training.py [--steps 14] [--repeats 2] [--threads 2] [--arms lean,lean-packed,trl,trl-nogc]
        [--models-dir DIR]   (more arms: lean-onepass, lean-packed-onepass, dpo, trl-dpo, and in bfloat16
        lean-bf16, lean-packed-bf16, trl-bf16, trl-nogc-bf16)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_MODEL, default_models_dir, resolve_model, table  # noqa: E402

LORA = dict(r=16, alpha=32)
BATCH, LR, SEED = 8, 2e-3, 42



def _step_clock():
    """A transformers ``TrainerCallback`` that records when training begins and when each step ends, and the
    dict it fills (``begin``, ``step_end``: perf_counter times)."""
    from transformers import TrainerCallback

    times: dict[str, list[float]] = {"begin": [], "step_end": []}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            times["begin"].append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            times["step_end"].append(time.perf_counter())

    return Clock(), times

def _rows() -> list[dict]:
    from tenfold.training.demo_task import demo_train_path

    return [json.loads(line) for line in demo_train_path().read_text().splitlines() if line.strip()]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---- arms (child processes) --------------------------------------------------------------------------
def arm_lean(model_path: str, steps: int, threads: int, packing: bool = False,
             micro_batch_tokens: int | None = None, dtype: str = "float32") -> dict:
    import torch

    from tenfold.training.demo_task import demo_train_path
    from tenfold.training.errors import TrainingCancelled
    from tenfold.training.sft import run_sft
    from tenfold.training.spec import TrainingSpec

    torch.set_num_threads(threads)
    t_import = time.perf_counter()
    per_epoch = math.ceil(len(_rows()) / BATCH)
    events: list[tuple[float, dict]] = []

    def emit(event: dict) -> None:
        events.append((time.perf_counter(), event))

    def should_stop() -> bool:
        return sum(1 for _, e in events if e["type"] == "metrics") >= steps

    with tempfile.TemporaryDirectory() as out:
        spec = TrainingSpec(
            base_model=BASE_MODEL, base_model_path=model_path, training_file=str(demo_train_path()),
            output_dir=out, n_epochs=math.ceil(steps / per_epoch), batch_size=BATCH, learning_rate=LR,
            lora_r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0, target_modules="all-linear",
            seed=SEED, logging_steps=1, torch_threads=threads, packing=packing,
            micro_batch_tokens=micro_batch_tokens, dtype=dtype)
        try:
            run_sft(spec, emit, should_stop)
        except TrainingCancelled:
            pass  # --steps not a whole number of epochs: stopped after `steps` steps, no final save
        t_end = time.perf_counter()
    started = next(t for t, e in events if e["type"] == "started")
    metrics = [(t, e) for t, e in events if e["type"] == "metrics"][:steps]
    t_last, last = metrics[-1]
    losses = [e["loss"] for _, e in metrics]
    name = (("tenfold packed" if packing else "tenfold") + (" (one pass)" if micro_batch_tokens == 0 else "")
            + f" {started_event(events)['base_dtype']}")
    return {"arm": name, "import_s": t_import - T0, "setup_s": started - t_import,
            "train_s": t_last - started, "after_s": t_end - t_last, "steps": len(metrics),
            "tokens": last["tokens"], "final_loss": losses[-1], "mean_loss_last_epoch": _mean(losses[-per_epoch:]),
            "peak_rss_mb": _rss_mb(), "threads": torch.get_num_threads(), "total_s": time.perf_counter() - T0}


def started_event(events: list[tuple[float, dict]]) -> dict:
    return next(e for _, e in events if e["type"] == "started")


def arm_trl(model_path: str, steps: int, threads: int, gradient_checkpointing: bool = True, bf16: bool = False) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(threads)
    t_import = time.perf_counter()
    per_epoch = math.ceil(len(_rows()) / BATCH)
    data = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in _rows()])
    clock, times = _step_clock()

    with tempfile.TemporaryDirectory() as out:
        torch.manual_seed(SEED)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        tuned = {} if gradient_checkpointing else {"gradient_checkpointing": False, "logging_steps": 1}
        config = SFTConfig(
            output_dir=out, max_steps=steps, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
            learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            bf16=bf16, fp16=False, use_cpu=True, save_strategy="no", eval_strategy="no",
            report_to="none", seed=SEED, dataloader_num_workers=0, disable_tqdm=True, **tuned)
        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM", bias="none")
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[clock])
        trainer.train()
        t_end = time.perf_counter()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"arm": "TRL SFTTrainer" + ("" if gradient_checkpointing else " (no grad ckpt)") + (" bf16" if bf16 else ""), "import_s": t_import - T0, "setup_s": times["begin"][0] - t_import,
            "train_s": times["step_end"][-1] - times["begin"][0], "after_s": t_end - times["step_end"][-1],
            "steps": len(times["step_end"]), "tokens": int(trainer._total_train_tokens),
            "final_loss": losses[-1], "mean_loss_last_epoch": _mean(losses[-per_epoch:]),
            "peak_rss_mb": _rss_mb(), "threads": torch.get_num_threads(), "total_s": time.perf_counter() - T0}


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def _pref_rows() -> list[dict]:
    """Preference pairs from the demo set: chosen = the JSON answer, rejected = the same answer as prose."""
    out = []
    for r in _rows():
        answer = json.loads(r["messages"][-1]["content"])["answer"]
        out.append({"prompt": r["messages"][:-1], "chosen": r["messages"][-1:],
                    "rejected": [{"role": "assistant", "content": f"The answer is {answer}."}]})
    return out


def arm_dpo(model_path: str, steps: int, threads: int) -> dict:
    import torch

    from tenfold.training.dpo import run_dpo
    from tenfold.training.errors import TrainingCancelled
    from tenfold.training.spec import TrainingSpec

    torch.set_num_threads(threads)
    t_import = time.perf_counter()
    rows = _pref_rows()
    per_epoch = math.ceil(len(rows) / BATCH)
    events: list[tuple[float, dict]] = []

    def emit(event: dict) -> None:
        events.append((time.perf_counter(), event))

    def should_stop() -> bool:
        return sum(1 for _, e in events if e["type"] == "metrics") >= steps

    with tempfile.TemporaryDirectory() as out:
        data = Path(out) / "prefs.jsonl"
        data.write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": r["chosen"][0]["content"],
                                            "rejected": r["rejected"][0]["content"]}) + "\n" for r in rows))
        spec = TrainingSpec(
            method="dpo", base_model=BASE_MODEL, base_model_path=model_path, training_file=str(data),
            output_dir=out + "/o", n_epochs=math.ceil(steps / per_epoch), batch_size=BATCH, learning_rate=LR,
            lora_r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0, target_modules="all-linear",
            seed=SEED, logging_steps=1, torch_threads=threads, dpo_beta=0.1, dtype="float32")
        try:
            run_dpo(spec, emit, should_stop)
        except TrainingCancelled:
            pass
        t_end = time.perf_counter()
    started = next(t for t, e in events if e["type"] == "started")
    metrics = [(t, e) for t, e in events if e["type"] == "metrics"][:steps]
    t_last, last = metrics[-1]
    losses = [e["loss"] for _, e in metrics]
    # "setup" includes the one reference pass over the data (log-probs precomputed before step 1)
    return {"arm": "tenfold DPO", "import_s": t_import - T0, "setup_s": started - t_import,
            "train_s": t_last - started, "after_s": t_end - t_last, "steps": len(metrics),
            "tokens": last["tokens"], "final_loss": losses[-1], "mean_loss_last_epoch": _mean(losses[-per_epoch:]),
            "peak_rss_mb": _rss_mb(), "threads": torch.get_num_threads(), "total_s": time.perf_counter() - T0}


def arm_trl_dpo(model_path: str, steps: int, threads: int) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(threads)
    t_import = time.perf_counter()
    rows = _pref_rows()
    per_epoch = math.ceil(len(rows) / BATCH)
    clock, times = _step_clock()

    with tempfile.TemporaryDirectory() as out:
        torch.manual_seed(SEED)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        config = DPOConfig(
            output_dir=out, max_steps=steps, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
            learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            bf16=False, fp16=False, use_cpu=True, save_strategy="no", eval_strategy="no", beta=0.1,
            report_to="none", seed=SEED, dataloader_num_workers=0, disable_tqdm=True)
        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM", bias="none")
        trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[clock])
        # tokens: prompt+chosen and prompt+rejected of the pairs the steps consumed (about steps*BATCH pairs)
        lengths = [len(x["prompt_ids"]) * 2 + len(x["chosen_ids"]) + len(x["rejected_ids"])
                   for x in trainer.train_dataset] if "prompt_ids" in trainer.train_dataset.column_names else None
        trainer.train()
        t_end = time.perf_counter()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = int(sum(lengths) * steps * BATCH / len(lengths)) if lengths else 0
    return {"arm": "TRL DPOTrainer", "import_s": t_import - T0, "setup_s": times["begin"][0] - t_import,
            "train_s": times["step_end"][-1] - times["begin"][0], "after_s": t_end - times["step_end"][-1],
            "steps": len(times["step_end"]), "tokens": tokens,
            "final_loss": losses[-1] if losses else float("nan"),
            "mean_loss_last_epoch": _mean(losses[-per_epoch:]),
            "peak_rss_mb": _rss_mb(), "threads": torch.get_num_threads(), "total_s": time.perf_counter() - T0}


ARMS = {"dpo": (arm_dpo, {}), "trl-dpo": (arm_trl_dpo, {}),
"lean": (arm_lean, {}), "lean-packed": (arm_lean, {"packing": True}),
        "lean-onepass": (arm_lean, {"micro_batch_tokens": 0}),
        "lean-packed-onepass": (arm_lean, {"packing": True, "micro_batch_tokens": 0}),
        "trl": (arm_trl, {}), "trl-nogc": (arm_trl, {"gradient_checkpointing": False}),
        # the best format where it wins (issue 19): tenfold's base in bfloat16 (adapter, gradients and optimizer
        # float32); TRL with bf16=True (autocast over a float32 model, its documented mixed precision)
        "lean-bf16": (arm_lean, {"dtype": "bfloat16"}), "lean-packed-bf16": (arm_lean, {"packing": True, "dtype": "bfloat16"}),
        "trl-bf16": (arm_trl, {"bf16": True}), "trl-nogc-bf16": (arm_trl, {"gradient_checkpointing": False, "bf16": True})}


# ---- driver --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=14, help="optimizer steps per arm (14 = one epoch)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per arm, order alternating")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each arm")
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--arms", default="lean,lean-packed,trl,trl-nogc", help="comma-separated arms to run")
    parser.add_argument("--arm", choices=list(ARMS), help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.arm:  # child
        fn, kw = ARMS[args.arm]
        Path(args.json_out).write_text(json.dumps(fn(args.model_path, args.steps, args.threads, **kw)))
        return

    from tenfold.training.batching import CPU_MICRO_BATCH_TOKENS

    t = time.perf_counter()
    model_path = str(resolve_model(args.models_dir))
    print(f"base model {BASE_MODEL} at {model_path} (resolve {time.perf_counter() - t:.1f} s)")
    print(f"workload: demo set (106 chats), LoRA r16/a32 all-linear, batch {BATCH}, lr {LR}, {args.steps} steps, "
          f"fp32 CPU, {args.threads} torch threads, assistant-only loss; tenfold arms run each step as micro-batches "
          f"of <= {CPU_MICRO_BATCH_TOKENS} token positions unless marked 'one pass'")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for rep in range(args.repeats):
        for arm in (arms if rep % 2 == 0 else arms[::-1]):
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
                proc = subprocess.run([sys.executable, __file__, "--arm", arm, "--model-path", model_path,
                                       "--steps", str(args.steps), "--threads", str(args.threads),
                                       "--json-out", f.name],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                if proc.returncode != 0:  # child logs (progress bars, TRL's log dicts) only on failure
                    sys.exit(f"{arm} arm failed (exit {proc.returncode}):\n{proc.stdout[-5000:]}")
                r = json.loads(Path(f.name).read_text())
            r["loadavg_1m_after"] = os.getloadavg()[0]
            results[arm].append(r)
            print(f"  run {rep + 1} {arm:4s}: train {r['train_s']:.1f} s, setup {r['setup_s']:.1f} s, "
                  f"import {r['import_s']:.1f} s, loss {r['final_loss']:.3f}, "
                  f"1-min load avg after {r['loadavg_1m_after']:.2f}", flush=True)

    best = {arm: min(runs, key=lambda r: r["train_s"]) for arm, runs in results.items()}
    headers = ["arm", "train s (best)", "train s (all)", "s/step", "tokens", "tok/s", "final loss",
               "mean loss last epoch", "startup s", "import s", "setup s", "peak RSS MB", "threads"]
    rows = []
    for arm in arms:
        b = best[arm]
        rows.append([b["arm"], b["train_s"], " / ".join(f"{r['train_s']:.1f}" for r in results[arm]),
                     b["train_s"] / b["steps"], b["tokens"], b["tokens"] / b["train_s"], b["final_loss"],
                     b["mean_loss_last_epoch"], b["import_s"] + b["setup_s"], b["import_s"], b["setup_s"], b["peak_rss_mb"], b["threads"]])
    print()
    print(table(headers, rows))
    print()
    pairs = [(o, t) for o in arms if o.startswith("lean") for t in arms if t.startswith("trl") and "dpo" not in t
             and o.endswith("-bf16") == t.endswith("-bf16")]  # same format on both sides
    pairs += [(o, t) for o in arms if o == "dpo" for t in arms if t == "trl-dpo"]
    for ours, theirs in pairs:
        if True:
            lean, trl = best[ours], best[theirs]
            print(f"ratio {ours}/{theirs}: tok/s {(lean['tokens'] / lean['train_s']) / (trl['tokens'] / trl['train_s']):.2f}, "
                  f"train time {lean['train_s'] / trl['train_s']:.2f}, peak RSS {lean['peak_rss_mb'] / trl['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
