"""AdamW with weight decay only on matrices (embeddings and linear weights).

Biases, LayerNorm gains and other 1-D parameters are not decayed (as in GPT-2 / nanoGPT).
A parameter shared by two modules (tied embedding and LM head) appears once, since
`named_parameters` de-duplicates.
"""

from __future__ import annotations

import torch

from training.config import TrainConfig


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str) -> torch.optim.AdamW:
    """AdamW over `param_groups`; the fused kernel on CUDA (one launch for all parameters)."""
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        fused=device_type == "cuda",
    )
