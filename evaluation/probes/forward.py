"""Shared by the probes: logits at chosen positions in batches, and the RoPE variant per length."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch



@dataclass
class Forward:
    """Runs (N, T) token arrays through `model`, `batch_tokens` inputs at a time, returning the
    log-probabilities at `positions` only (the vocabulary projection is the costly part)."""

    model: torch.nn.Module
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    batch_tokens: int = 8192
    on_batch: Optional[Callable[[int], None]] = None  # called with the forwarded tokens of each batch

    @torch.no_grad()
    def log_probs(self, inputs: np.ndarray, positions: np.ndarray) -> torch.Tensor:
        """inputs (N, T), positions (P,) -> (N, P, V) float32 log-softmax, on the CPU."""
        n, T = inputs.shape
        per_batch = max(1, self.batch_tokens // T)
        index = torch.as_tensor(positions, dtype=torch.long, device=self.device)
        out = []
        for b in range(0, n, per_batch):
            x = torch.from_numpy(np.asarray(inputs[b : b + per_batch], dtype=np.int64)).to(self.device)
            with self.autocast():
                logits = self.model.lm_head(self.model.hidden(x)[:, index])  # (B, P, V)
            out.append(torch.log_softmax(logits.float(), dim=-1).cpu())
            if self.on_batch is not None:
                self.on_batch(len(x) * T)
        return torch.cat(out)


def fits(model, length: int) -> bool:
    """Whether the model can take `length` tokens (the learned table cannot go past its size)."""
    return model.max_positions is None or length <= model.max_positions


def use_variant(model, variant: Optional[str], length: int) -> None:
    """The variant at factor length / L_train (at least 1), as the perplexity evaluation does."""
    model.set_variant(variant, max(1.0, length / model.cfg.block_size))
