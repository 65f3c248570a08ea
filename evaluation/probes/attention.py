"""Attention statistics per layer and head: how far does each head look?

For query i of a window and its attention probabilities a_ij over keys j <= i:

- mean attention distance: sum_j a_ij (i - j), averaged over every query of every window
  (uniform attention over the prefix gives i / 2, so (T - 1) / 4 averaged over a window of T);
- mass past L: sum_{j : i - j > L} a_ij, the share of attention on tokens farther back than the
  training length, averaged over the queries that have such tokens (i > L; none when T <= L).

The probabilities come from the explicit attention path (model.attention.record_attention),
which the fused kernels do not give, on `windows` windows per length that start at the same
positions at every length (a longer window extends the shorter one).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from model.attention import record_attention
from model.positional import Positions


class AttentionStats:
    """Recorder for `record_attention`: accumulates the two statistics per (layer, head)."""

    def __init__(self, n_layer: int, n_head: int, train_length: int):
        self.train_length = train_length
        self.distance_sum = np.zeros((n_layer, n_head))
        self.far_sum = np.zeros((n_layer, n_head))
        self.queries = np.zeros(n_layer, dtype=np.int64)  # per layer: queries summed over
        self.far_queries = np.zeros(n_layer, dtype=np.int64)

    def __call__(self, layer: int, probs: torch.Tensor, positions: Positions) -> None:
        dist = (positions.q[:, None] - positions.k[None, :]).to(probs.device, probs.dtype)  # (Tq, Tk)
        dist = dist.clamp(min=0)  # keys after the query carry no probability
        self.distance_sum[layer] += (probs * dist).sum(dim=(0, 2, 3)).double().cpu().numpy()
        self.queries[layer] += probs.shape[0] * probs.shape[2]
        can = positions.q > self.train_length  # queries with keys farther than L
        if can.any():
            far = (probs[:, :, can] * (dist[can] > self.train_length)).sum(dim=(0, 2, 3))  # (H,)
            self.far_sum[layer] += far.double().cpu().numpy()
            self.far_queries[layer] += probs.shape[0] * int(can.sum())

    def mean_distance(self) -> np.ndarray:
        return self.distance_sum / self.queries[:, None]  # (n_layer, n_head)

    def far_mass(self) -> Optional[np.ndarray]:
        return self.far_sum / self.far_queries[:, None] if self.far_queries.all() else None


@torch.no_grad()
def attention_stats(model, windows: np.ndarray, device: torch.device, autocast, batch_tokens: int,
                    on_batch=None) -> AttentionStats:
    """Statistics over (W, T) token windows, `batch_tokens` inputs per forward."""
    stats = AttentionStats(model.cfg.n_layer, model.cfg.n_head, model.cfg.block_size)
    per_batch = max(1, batch_tokens // windows.shape[1])
    with record_attention(model, stats):
        for b in range(0, len(windows), per_batch):
            x = torch.from_numpy(np.asarray(windows[b : b + per_batch], dtype=np.int64)).to(device)
            with autocast():
                model.hidden(x)
            if on_batch is not None:
                on_batch(x.numel())
    return stats
