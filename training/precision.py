"""Numeric precision: bf16 autocast on CUDA, fp32 on CPU, TF32 matmuls on CUDA."""

from __future__ import annotations

import contextlib

import torch

from training.config import Dtype


def resolve_dtype(dtype: Dtype, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on a CUDA device that supports it, fp32 otherwise."""
    if dtype == Dtype.auto:
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use_bf16 else torch.float32
    return torch.bfloat16 if dtype == Dtype.bf16 else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast context for the forward pass; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def enable_tf32(device: torch.device) -> None:
    """Let fp32 matmuls use TF32 tensor cores on CUDA (Ampere and later); no effect on CPU."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
