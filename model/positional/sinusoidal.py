"""Fixed sinusoidal absolute positions (Vaswani et al. 2017, Sec. 3.5), added to the token
embeddings scaled by sqrt(n_embd) as in the paper. Randomizable (randomized.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from model.config import ModelConfig
from model.positional.base import Family, PositionalEncoding, Positions
from model.positional.randomized import RandomizableConfig, randomize_range
from model.positional.registry import register


def sinusoid_table(positions: Tensor, dim: int, base: float) -> Tensor:
    """Vaswani et al. 2017, Sec. 3.5: PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(...)."""
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim)
    angles = positions.float()[..., None] * inv_freq  # (..., T, d/2) for positions (..., T)
    # (..., T, d/2, 2) -> (..., T, d): sin and cos interleaved at even and odd channels
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)[..., :dim]


@register
class SinusoidalPositions(PositionalEncoding):
    """Fixed sinusoids of any length; token embeddings scaled by sqrt(n_embd) as in the paper. Randomizable (randomized.py)."""

    family = Family.absolute
    adds_embedding = True
    randomizable = True

    @dataclass
    class Config(RandomizableConfig):
        name: str = "sinusoidal"
        base: float = 10000.0
        # Vaswani et al.: token embeddings drawn with std n_embd^-0.5 and multiplied by sqrt(n_embd),
        # so they enter at unit scale beside the [-1, 1] table (RMS 0.71). GPT-2's 0.02 init, even
        # scaled, would enter at 0.02 sqrt(n_embd) (0.16 at 64 wide) and drown in the table.
        scale_embeddings: bool = True

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        if cfg.n_embd % 2:
            raise ValueError(f"sinusoidal positions need an even n_embd, got {cfg.n_embd}")
        self.dim, self.base = cfg.n_embd, pos.base
        self.randomize_to = randomize_range(cfg, pos)
        self.scale = math.sqrt(cfg.n_embd) if pos.scale_embeddings else 1.0

    def token_scale(self) -> float:
        return self.scale

    def token_init_std(self) -> Optional[float]:
        # the paper's balance: std d^-0.5 times sqrt(d) puts the tokens at unit scale
        return self.dim**-0.5 if self.scale != 1.0 else None

    def embed(self, positions: Positions) -> Tensor:
        return sinusoid_table(positions.q, self.dim, self.base)  # (Tq, C), or (B, T, C) per sequence
