"""Run windows through a model and sum the cross-entropy of the tokens they score.

Perplexity is exp(mean cross-entropy) over the scored tokens. A sliding window scores only its
last few positions, so the vocabulary projection (the costliest layer of a small model with GPT-2's
50,257-token vocabulary) is applied to those positions only: `model.hidden` gives the final hidden
states (B, L, C), and `model.lm_head` sees their last k positions (B, k, C). The positions before
them are still computed by every block, so the scored tokens see the whole window.

Memory is bounded by `batch_tokens` at any length: a batch holds at most batch_tokens input
tokens (one window when a window is longer), and the head runs on batch_tokens positions at a
time, so the logits never exceed (batch_tokens, V), where one window of 16K tokens would otherwise
make 16K x 50,257 floats (3.3 GB) plus a float copy for the cross-entropy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.windows import Windows


@dataclass
class Scores:
    """Sums over the scored tokens; `position_*` per window position (when asked for)."""

    loss_sum: float = 0.0
    count: int = 0
    position_sum: Optional[np.ndarray] = None  # (L,) float64
    position_count: Optional[np.ndarray] = None  # (L,) int64
    windows: int = 0
    forwarded_tokens: int = 0

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count

    @property
    def ppl(self) -> float:
        return float(np.exp(self.loss))

    def position_loss(self) -> np.ndarray:
        return self.position_sum / np.maximum(self.position_count, 1)


@dataclass
class WindowScorer:
    """Scores `Windows` over a flat token array with one model, `batch_tokens` inputs at a time."""

    model: torch.nn.Module
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    batch_tokens: int = 8192
    on_batch: Optional[Callable[[int], None]] = None  # called with the forwarded tokens of each batch

    @torch.no_grad()
    def score(self, tokens: np.ndarray, windows: Windows, per_position: bool = False) -> Scores:
        L = windows.length
        out = Scores()
        if per_position:
            out.position_sum, out.position_count = np.zeros(L), np.zeros(L, dtype=np.int64)
        # Windows that score the same positions go together, so a batch's head slice stays short.
        order = np.lexsort((windows.score_to, windows.score_from))[::-1]
        per_batch = max(1, self.batch_tokens // L)
        offsets = np.arange(L + 1)
        was_training = self.model.training
        self.model.eval()
        try:
            for b in range(0, len(order), per_batch):
                rows = order[b : b + per_batch]
                lo, hi = windows.score_from[rows], windows.score_to[rows]
                first = int(lo.min())  # the head runs on positions first .. L - 1
                buf = np.asarray(tokens[windows.starts[rows][:, None] + offsets], dtype=np.int64)  # (B, L + 1)
                x = torch.from_numpy(buf[:, :-1]).to(self.device)
                y = torch.from_numpy(buf[:, 1 + first :]).to(self.device)  # (B, L - first)
                with self.autocast():
                    h = self.model.hidden(x)[:, first:]  # (B, L - first, C)
                ce = self.head_cross_entropy(h, y).cpu().numpy()  # (B, L - first)
                pos = np.arange(first, L)[None, :]  # (1, L - first) window positions
                mask = (pos >= lo[:, None]) & (pos < hi[:, None])  # (B, L - first)
                out.loss_sum += float((ce * mask).sum())
                out.count += int(mask.sum())
                if per_position:
                    out.position_sum[first:] += (ce * mask).sum(axis=0)
                    out.position_count[first:] += mask.sum(axis=0)
                out.windows += len(rows)
                out.forwarded_tokens += len(rows) * L
                if self.on_batch is not None:
                    self.on_batch(len(rows) * L)
        finally:
            self.model.train(was_training)
        return out

    def head_cross_entropy(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (B, T) float64 of the head's logits at hidden states h (B, T, C) against
        targets y (B, T), max(1, batch_tokens // B) positions at a time."""
        B, T = y.shape
        step = max(1, self.batch_tokens // B)
        ce = torch.empty(B, T, dtype=torch.float64, device=h.device)
        for t in range(0, T, step):
            with self.autocast():
                logits = self.model.lm_head(h[:, t : t + step])  # (B, <= step, V)
            part = F.cross_entropy(logits.float().flatten(0, 1), y[:, t : t + step].flatten(), reduction="none")
            ce[:, t : t + step] = part.view(B, -1)
        return ce
