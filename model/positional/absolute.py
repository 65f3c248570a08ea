"""Absolute encodings: a (T, C) vector per position added to the token embeddings."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from model.config import ModelConfig, SinusoidalPos
from model.positional.base import PositionalEncoding, PositionOutOfRange, Positions


class LearnedPositions(PositionalEncoding):
    """GPT-2's learned table of `block_size` position vectors."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.max_positions = cfg.block_size
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)

    def embed(self, positions: Positions) -> Tensor:
        # a fixed decode step cannot check here (its positions are on the device): its caller does
        if positions.total is not None and positions.total > self.max_positions:
            raise PositionOutOfRange(
                f"position {positions.total - 1} is past the learned position table, which holds "
                f"{self.max_positions} positions (block_size): shorten the input to at most "
                f"{self.max_positions} tokens"
            )
        return self.wpe(positions.q)  # (Tq, C)


def sinusoid_table(positions: Tensor, dim: int, base: float) -> Tensor:
    """Vaswani et al. 2017, Sec. 3.5: PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(...)."""
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, d/2)
    # (T, d/2, 2) -> (T, d): sin and cos interleaved at even and odd channels
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)[:, :dim]


class SinusoidalPositions(PositionalEncoding):
    """Fixed sinusoids of any length; token embeddings scaled by sqrt(n_embd) as in the paper."""

    def __init__(self, cfg: ModelConfig, pos: SinusoidalPos):
        super().__init__()
        if cfg.n_embd % 2:
            raise ValueError(f"sinusoidal positions need an even n_embd, got {cfg.n_embd}")
        self.dim, self.base = cfg.n_embd, pos.base
        self.scale = math.sqrt(cfg.n_embd) if pos.scale_embeddings else 1.0

    def token_scale(self) -> float:
        return self.scale

    def token_init_std(self) -> Optional[float]:
        # the paper's balance: std d^-0.5 times sqrt(d) puts the tokens at unit scale
        return self.dim**-0.5 if self.scale != 1.0 else None

    def embed(self, positions: Positions) -> Tensor:
        return sinusoid_table(positions.q, self.dim, self.base)  # (Tq, C)
