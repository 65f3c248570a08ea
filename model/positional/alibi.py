"""ALiBi (Press et al., ICLR 2022): a fixed linear penalty -m_h (q - k) on the attention scores,
one slope per head, no learned parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from model.config import ModelConfig, PosConfig
from model.positional.base import Family, PositionalEncoding, Positions, ScoreMod
from model.positional.registry import register


def alibi_slopes(n_head: int) -> Tensor:
    """Press et al. 2022 (ALiBi), Sec. 3: the geometric sequence starting at 2^(-8/n) with that
    ratio; for a head count that is not a power of 2, the slopes of the closest smaller power of 2
    followed by every other slope of twice that power."""

    def power_of_2_slopes(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_head))
    slopes = power_of_2_slopes(closest)
    if closest < n_head:
        slopes += power_of_2_slopes(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes, dtype=torch.float32)


@register
class ALiBi(PositionalEncoding):
    """Bias -m_h * (q - k): a fixed linear penalty on distance, one slope per head."""

    family = Family.bias
    adds_bias = True
    has_score_mod = True

    @dataclass
    class Config(PosConfig):
        name: str = "alibi"

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(cfg.n_head), persistent=False)

    def bias(self, positions: Positions) -> Tensor:
        distance = (positions.q[:, None] - positions.k[None, :]).float()  # (Tq, Tk)
        return -self.slopes[:, None, None] * distance  # (H, Tq, Tk)

    def score_mod(self, positions: Positions) -> ScoreMod:
        slopes = self.slopes

        def alibi_score(score, b, h, q_idx, kv_idx):
            return score - slopes[h] * (q_idx - kv_idx)

        return alibi_score
