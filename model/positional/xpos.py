"""xPos (Sun et al., ACL 2023, "A Length-Extrapolatable Transformer"): RoPE whose rotated query at
position n is scaled by zeta^(n / gamma) and key at position m by zeta^(-m / gamma), per rotated
pair i: zeta_i = (i / (r/2) + s) / (1 + s), s = `smoothing` (0.4), gamma = `scale_base` (512).
The score of (n, m) is then RoPE's times zeta_i^((n - m) / gamma) per pair: a decay with distance
that is largest on the fast-rotating pairs (zeta_0 = s / (1 + s) = 0.29), the paper's remedy for
RoPE's unstable attention resolution far from the query.

Finite scales, and the cache. Only n - m matters to the scores, so the positions may be shifted by
any centre c: q gets zeta^((n - c) / gamma), k zeta^(-(m - c) / gamma). The reference
implementations (torchscale, x-transformers) centre at half the *current* length, which keeps
both factors near 1 but changes every earlier key's scale as the sequence grows, so keys in a KV
cache would go stale. Here c is fixed at block_size // 2 (equal to x-transformers' centre at the
training length): cached keys stay exact, and the largest factor at position p is
zeta_0^(-|p - c| / gamma) = exp(1.25 |p - c| / gamma): 110 at 8 x L with L = 256 (p - c = 1920),
so fp32 and bf16 (whose range is fp32's) stay finite up to |p - c| of about 70 gamma (36k tokens at
gamma 512) and fp16 up to about 8.8 gamma (4.5k tokens).

Pairing, partial rotary and the frequencies are RoPE's (rope.py); x-transformers' rotary pairs
channels (2i, 2i + 1), our `interleaved`. Randomizable (randomized.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from model.config import ModelConfig
from model.positional.base import Family, PositionalEncoding, Positions, Rotation
from model.positional.randomized import RandomizableConfig, randomize_range
from model.positional.registry import register
from model.positional.rope import Pairing, pair_tables, rotary_dim_of
from model.positional.rope_scaling import base_inv_freq


@register
class XPos(PositionalEncoding):
    """RoPE with queries scaled by zeta^(n/gamma) and keys by zeta^(-m/gamma), centred at block_size // 2."""

    family = Family.rotary
    rotates = True
    randomizable = True

    @dataclass
    class Config(RandomizableConfig):
        name: str = "xpos"
        base: float = 10000.0
        rotary_dim: Optional[int] = None  # None: the whole head dimension
        pairing: Pairing = Pairing.half
        scale_base: float = 512.0  # gamma: the distance over which the decay factor is zeta
        smoothing: float = 0.4  # zeta_i = (i / (r/2) + smoothing) / (1 + smoothing)

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        self.rotary_dim = rotary_dim_of(cfg, pos.rotary_dim)
        if pos.scale_base <= 0 or pos.smoothing <= 0:
            raise ValueError(f"pos.scale_base and pos.smoothing must be > 0, got {pos.scale_base}, {pos.smoothing}")
        self.pairing, self.scale_base, self.centre = Pairing(pos.pairing).value, pos.scale_base, cfg.block_size // 2
        self.randomize_to = randomize_range(cfg, pos)
        pairs = torch.arange(0, self.rotary_dim, 2, dtype=torch.float32)  # 2i
        self.register_buffer("inv_freq", base_inv_freq(pos.base, self.rotary_dim), persistent=False)
        zeta = (pairs + pos.smoothing * self.rotary_dim) / ((1 + pos.smoothing) * self.rotary_dim)
        self.register_buffer("zeta", zeta, persistent=False)  # (r/2,)

    def rotation(self, positions: Positions) -> Rotation:
        p = positions.q.float()  # (Tq,) or (B, T)
        angles, apply = pair_tables(p[..., None] * self.inv_freq, self.pairing, positions.per_sequence)
        power = (p[..., None] - self.centre) / self.scale_base  # (..., Tq, 1)
        scale, _ = pair_tables(self.zeta**power, self.pairing, positions.per_sequence)  # like angles
        cos, sin = angles.cos(), angles.sin()
        return Rotation(apply, cos * scale, sin * scale, key_cos=cos / scale, key_sin=sin / scale)
