"""Score-bias encodings: a per-head bias of the query-key distance added to attention scores.

Both are causal: only distances n = q - k >= 0 matter (the mask removes the rest). The bias is
built once per forward from absolute positions, so a KV-cached decode step sees the same bias as
a full forward.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from model.config import ModelConfig, T5Pos
from model.positional.base import GradHook, PositionalEncoding, Positions, ScoreMod


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


class T5RelativeBias(PositionalEncoding):
    """One learned (num_buckets, n_head) table shared by all layers, as in T5."""

    def __init__(self, cfg: ModelConfig, pos: T5Pos):
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


class ALiBi(PositionalEncoding):
    """Bias -m_h * (q - k): a fixed linear penalty on distance, one slope per head."""

    def __init__(self, cfg: ModelConfig):
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
