"""The engine's optional C extension (``_cpu_kernels``, built at install when a C compiler is present):
the one module that loads it and answers which of its kernels this device and dtype can use.

Owns: ``ext`` (the extension module, or None), ``linear_kernel_available``, ``decode_kernel_available``,
``lora_kernel_available`` and the slot-stack dtypes the LoRA kernel reads (``STACK_KINDS``). Does not own:
calling the kernels (``layers`` for linears and attention, ``lora_stacks`` for the LoRA delta).
"""

from __future__ import annotations

import torch

try:
    from tenfold.engine import _cpu_kernels as ext
except ImportError:  # pragma: no cover - depends on the install
    ext = None

STACK_KINDS = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # the LoRA kernel's weight kinds


def linear_kernel_available(device: torch.device, dtype: torch.dtype) -> bool:
    """True when base linears run the C kernel (CPU, float32, extension built with ``linear_packed``)."""
    return ext is not None and hasattr(ext, "linear_packed") and device.type == "cpu" and dtype == torch.float32


KV_KINDS = {torch.float32: 0, torch.bfloat16: 2}  # the KV cache dtypes the decode attention kernel reads


def decode_kernel_available(device: torch.device, dtype: torch.dtype, kv_dtype: torch.dtype | None = None) -> bool:
    """True when decode rows attend through the C kernel (CPU, float32 queries, a float32 or bfloat16
    cache, extension built)."""
    return ext is not None and device.type == "cpu" and dtype == torch.float32 and (kv_dtype or dtype) in KV_KINDS


def lora_kernel_available(device: torch.device, dtype: torch.dtype, stack_dtype: torch.dtype | None = None) -> bool:
    """True when every LoRA segment (decode rows and prefill chunks) takes the C kernel: CPU, float32
    activations, stacks in float32, float16 or bfloat16, extension built."""
    return (ext is not None and device.type == "cpu" and dtype == torch.float32
            and (stack_dtype or dtype) in STACK_KINDS)
