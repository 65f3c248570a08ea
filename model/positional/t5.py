"""T5's bucketed relative position bias (Raffel et al. 2020): a learned per-head bias of the
bucketed query-key distance, added to the attention scores and shared by all layers.

Causal: only distances n = q - k >= 0 matter (the mask removes the rest). The bias is built once
per forward from absolute positions, so a KV-cached decode step sees the same bias as a full
forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from model.config import ModelConfig, PosConfig
from model.positional.base import Family, GradHook, PositionalEncoding, Positions, ScoreMod
from model.positional.registry import register


def t5_bucket(distance: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """Raffel et al. 2020 (T5), unidirectional buckets of the distance n = q - k (clamped at 0).

    Half of the buckets hold the exact distances 0 .. num_buckets/2 - 1; the rest cover
    num_buckets/2 .. max_distance logarithmically, and every farther distance shares the last one.
    """
    n = distance.clamp(min=0)
    exact = num_buckets // 2
    log_ratio = torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return torch.where(n < exact, n, far)


@register
class T5RelativeBias(PositionalEncoding):
    """One learned (num_buckets, n_head) table shared by all layers, as in T5."""

    family = Family.bias
    adds_bias = True
    has_score_mod = True

    @dataclass
    class Config(PosConfig):
        name: str = "t5"
        num_buckets: int = 32
        max_distance: int = 128

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        if pos.num_buckets < 2 or pos.max_distance <= pos.num_buckets // 2:
            raise ValueError(
                "pos.num_buckets must be >= 2 and pos.max_distance > num_buckets / 2, got "
                f"num_buckets={pos.num_buckets}, max_distance={pos.max_distance}"
            )
        self.num_buckets, self.max_distance = pos.num_buckets, pos.max_distance
        self.relative_attention_bias = nn.Embedding(pos.num_buckets, cfg.n_head)
        from model.positional.t5_table_grad import far_bucket_start  # imports t5_bucket from here

        # a Python int, so the band gradient compiles into the backward graph (no graph break)
        self.far_start = far_bucket_start(pos.num_buckets, pos.max_distance)

    def bias_by_distance(self, num_distances: int, device: torch.device) -> Tensor:
        """(H, num_distances): the bias of every distance 0 .. num_distances - 1."""
        buckets = t5_bucket(torch.arange(num_distances, device=device), self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).t()

    def bias(self, positions: Positions) -> Tensor:
        distance = positions.q[:, None] - positions.k[None, :]  # (Tq, Tk)
        buckets = t5_bucket(distance, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)  # (Tq, Tk, H) -> (H, Tq, Tk)

    def score_mod(self, positions: Positions) -> ScoreMod:
        # a constant inside the kernel: score_mod_grad supplies the table's gradient
        by_distance = self.bias_by_distance(positions.total, positions.k.device).detach()  # (H, Tk)

        def t5_score(score, b, h, q_idx, kv_idx):
            # evaluated at masked (q < k) positions too: clamp the index into the table
            return score + by_distance[h, (q_idx - kv_idx).clamp(min=0)]

        return t5_score

    def score_mod_grad(self, positions: Positions) -> Optional[GradHook]:
        table = self.relative_attention_bias.weight
        if not (torch.is_grad_enabled() and table.requires_grad):
            return None

        from model.positional.t5_table_grad import AttachTableGrad  # imports t5_bucket from here

        def attach(out, q, k, v, lse):
            return AttachTableGrad.apply(out, table, q, k, v, lse, self.max_distance, self.far_start)

        return attach
