"""CoPE, contextual position encoding (Golovneva et al. 2024, "Contextual Position Encoding:
Learning to Count What's Important"): positions counted by the model itself.

For query i and key j <= i, the gate g_it = sigmoid(q_i . k_t / sqrt(d)) (the attention's own
scaled scores) says whether token t counts, and the position of j seen from i is
p_ij = sum_{t=j..i} g_it, clamped at npos_max - 1. A fractional p_ij interpolates between the
learned embeddings of its integer neighbours, e[p] = (p - floor p) e[ceil p] + (1 - p + floor p)
e[floor p]; the score gains q_i . e[p_ij] (q unscaled), computed as the paper's Appendix B does:
q_i . e[k] for every integer k first, then gathered and interpolated. The embeddings start at zero.

Parameters: one (npos_max, head_dim) table per layer, shared by the heads of that layer, as in the
paper's Appendix B code (each attention module holds its own CoPE, whose embedding broadcasts over
batch and heads) and x-transformers' `CoPE`. `npos_max` bounds the positions: every key more than npos_max - 1
counted tokens away shares the last embedding, which is what lets CoPE run past the training
length (x-transformers' default is 16; ours is 64, our choice: the paper takes it as a parameter).

It reads the scores, so it runs on the explicit-scores attention path (`needs_scores`). Causal and
cacheable: p_ij sums gates of keys between j and i only, so a cached step sees what a full forward
does; the keys past a query (the mask's, and a fixed step's empty slots) count nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from model.config import ModelConfig, PosConfig
from model.positional.base import Family, PositionalEncoding, Positions
from model.positional.registry import register


@register
class CoPE(PositionalEncoding):
    """Score bias q_i . e[p_ij], p_ij the sum of sigmoid gates from key j to query i."""

    family = Family.contextual
    needs_scores = True

    @dataclass
    class Config(PosConfig):
        name: str = "cope"
        npos_max: int = 64  # positions p_ij are clamped at npos_max - 1

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        if pos.npos_max < 2:
            raise ValueError(f"pos.npos_max must be >= 2, got {pos.npos_max}")
        self.npos_max = pos.npos_max
        self.pos_emb = nn.Parameter(torch.zeros(cfg.n_layer, pos.npos_max, cfg.n_embd // cfg.n_head))

    def score_bias(self, q: Tensor, scores: Tensor, positions: Positions, layer: int) -> Tensor:
        visible = positions.k[None, :] <= positions.q[:, None]  # (Tq, Tk)
        gates = scores.float().sigmoid() * visible  # (B, H, Tq, Tk); float32 sums under autocast
        pos = gates.flip(-1).cumsum(dim=-1).flip(-1).clamp(max=self.npos_max - 1)  # p_ij
        logits_int = q @ self.pos_emb[layer].t().to(q.dtype)  # (B, H, Tq, D) @ (D, P) -> (B, H, Tq, P)
        floor = pos.floor()
        w = (pos - floor).to(q.dtype)
        at_ceil = logits_int.gather(-1, pos.ceil().long())  # (B, H, Tq, Tk)
        at_floor = logits_int.gather(-1, floor.long())
        return at_ceil * w + at_floor * (1 - w)
