"""FIRE (Li et al., ICLR 2024, "Functional Interpolation for Relative Positions Improves Long
Context Transformers"): a learned function of the normalised distance added to the scores,

    b(i, j) = f_theta( psi(i - j) / psi(max(L_thr, i)) ),   psi(x) = log(c x + 1),

with f_theta a small MLP from that scalar to one value per head (1 -> `mlp_width` -> ReLU -> H:
the paper's two layers of width 32), c > 0 and the threshold L_thr learnable. Dividing by
psi(i) ("progressive interpolation") maps every query's distances into [0, 1], so a longer input
meets inputs the MLP has seen in training; the threshold keeps short queries (i < L_thr) from
being normalised by a tiny psi(i). Positions are 0-based: i is the query's absolute position
(from `positions.q`, so a KV-cached step sees the same bias as a full forward) and j the key's.

Sharing: one MLP, one c and one L_thr for the whole model, shared by every layer (the model has
one encoding instance; T5's bias is shared the same way) and by every head, the heads differing
through the MLP's H outputs. The paper's text was not available to confirm its sharing across
layers; this is the choice the interface makes (a bias is computed once per forward).
Constraints: c enters as |c| and L_thr is clamped to at least 1, so psi(max(L_thr, i)) > 0.
The MLP is initialised as every linear layer of the model (GPT-2's normal(0, 0.02), zero biases),
so training starts from a nearly flat bias.

There is no FlexAttention `score_mod` (an MLP over captured learned weights inside the kernel,
with a backward that cannot be checked on CPU): the bias runs as SDPA's float mask. Its cost is
the MLP's (Tq, Tk, mlp_width) hidden activations, once per forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from model.config import ModelConfig, PosConfig
from model.positional.base import Family, PositionalEncoding, Positions
from model.positional.registry import register


@register
class FIRE(PositionalEncoding):
    """A learned MLP of psi(i - j) / psi(max(L_thr, i)), one output per head."""

    family = Family.bias
    adds_bias = True

    @dataclass
    class Config(PosConfig):
        name: str = "fire"
        mlp_width: int = 32  # hidden units of f_theta
        init_c: float = 0.1  # psi's c at initialisation
        init_threshold: Optional[float] = None  # L_thr at initialisation; None: the training length
        learn_threshold: bool = True  # False: L_thr stays at init_threshold

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        threshold = float(cfg.block_size if pos.init_threshold is None else pos.init_threshold)
        if pos.mlp_width < 1 or pos.init_c <= 0 or threshold < 1:
            raise ValueError(
                "pos.mlp_width must be >= 1, pos.init_c > 0 and pos.init_threshold >= 1, got "
                f"mlp_width={pos.mlp_width}, init_c={pos.init_c}, init_threshold={threshold}"
            )
        self.mlp = nn.Sequential(nn.Linear(1, pos.mlp_width), nn.ReLU(), nn.Linear(pos.mlp_width, cfg.n_head))
        self.c = nn.Parameter(torch.tensor(float(pos.init_c)))
        if pos.learn_threshold:
            self.threshold = nn.Parameter(torch.tensor(threshold))
        else:
            self.register_buffer("threshold", torch.tensor(threshold))

    def psi(self, x: Tensor) -> Tensor:
        return torch.log1p(self.c.abs() * x)

    def normalized_distance(self, positions: Positions) -> Tensor:
        """(Tq, Tk): psi(i - j) / psi(max(L_thr, i)), the distance clamped at 0 (the masked part)."""
        q = positions.q.float()
        distance = (q[:, None] - positions.k.float()[None, :]).clamp(min=0)  # (Tq, Tk)
        scale = torch.maximum(self.threshold.clamp(min=1.0), q)  # (Tq,)
        return self.psi(distance) / self.psi(scale)[:, None]

    def bias(self, positions: Positions) -> Tensor:
        u = self.normalized_distance(positions)  # (Tq, Tk)
        return self.mlp(u[..., None]).permute(2, 0, 1)  # (Tq, Tk, 1) -> (Tq, Tk, H) -> (H, Tq, Tk)
