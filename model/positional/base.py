"""The one interface every positional encoding implements, and the per-forward positions.

Each encoding implements only the hooks of its family (the others return None):

- absolute: `embed(positions) -> (T, C)` added to the token embeddings;
- rotary:   `rotation(positions) -> Rotation` that rotates queries and keys;
- bias:     `bias(positions) -> (H, Tq, Tk)` added to the attention scores, and the same bias as a
            FlexAttention `score_mod` for the fast CUDA path.

The model builds a `Positions` once per forward and hands it to the encoding; no encoding infers a
position from a tensor's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Positions:
    """Absolute positions of one forward pass.

    `start` tokens are already in the KV cache (0 without a cache) and `length` new tokens arrive,
    so the queries sit at `start .. start + length - 1` and the keys at `0 .. start + length - 1`.

    A fixed-shape decode step (`Positions.fixed`, for CUDA graphs) has `start = None`: its query
    positions live only on the device, and its keys are every slot of the preallocated cache, the
    slots past a query being masked.
    """

    start: Optional[int]
    length: int
    q: Tensor  # (Tq,) int64: start + arange(length)
    k: Tensor  # (Tk,) int64: arange(start + length), or arange(cache capacity) when fixed

    @classmethod
    def make(cls, start: int, length: int, device: torch.device | str) -> "Positions":
        k = torch.arange(start + length, device=device)
        return cls(start=start, length=length, q=k[start:], k=k)

    @classmethod
    def fixed(cls, q: Tensor, capacity: int) -> "Positions":
        """Queries at the device-side positions `q` (Tq,), keys at every one of `capacity` slots."""
        return cls(start=None, length=q.shape[0], q=q, k=torch.arange(capacity, device=q.device))

    @property
    def is_fixed(self) -> bool:
        return self.start is None

    @property
    def total(self) -> Optional[int]:
        """Number of keys: everything the model has seen, cache included (None when fixed)."""
        return None if self.start is None else self.start + self.length


class PositionOutOfRange(ValueError):
    """A position beyond what the encoding can represent (the learned table's length)."""


ScoreMod = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]
GradHook = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


class PositionalEncoding(nn.Module):
    """Base class: no positional signal at all (every hook returns None)."""

    #: Longest sequence the encoding can represent (None: unbounded).
    max_positions: Optional[int] = None

    def recompute_on_growth(self, total: int) -> bool:
        """True when growing the sequence to `total` tokens changes how earlier positions are
        encoded, so every cached key and value (of every layer) is stale and must be recomputed."""
        return False

    def embed(self, positions: Positions) -> Optional[Tensor]:
        """(Tq, C) vectors added to the token embeddings of the new tokens, or None."""
        return None

    def token_scale(self) -> float:
        """Factor applied to the token embeddings before `embed` is added."""
        return 1.0

    def token_init_std(self) -> Optional[float]:
        """Standard deviation of the token embeddings at initialisation (None: GPT-2's 0.02)."""
        return None

    def rotation(self, positions: Positions) -> Optional["Rotation"]:
        """Rotation tables for the queries (and keys) of this forward, or None."""
        return None

    def bias(self, positions: Positions) -> Optional[Tensor]:
        """(H, Tq, Tk) additive attention bias (causal part excluded), or None."""
        return None

    def score_mod(self, positions: Positions) -> Optional[ScoreMod]:
        """The same bias as a FlexAttention score_mod(score, b, h, q_idx, kv_idx), or None."""
        return None

    def score_mod_grad(self, positions: Positions) -> Optional[GradHook]:
        """For a score_mod that reads learned parameters as constants: a function
        (out, q, k, v, lse) -> out that attaches their gradient to the attention output."""
        return None


class Rotation:
    """cos/sin tables for the query positions of one forward; `new(x)` rotates the (B, H, Tq, D)
    queries or keys of the new tokens."""

    def __init__(self, apply: Callable[[Tensor, Tensor, Tensor], Tensor], cos: Tensor, sin: Tensor):
        self._apply, self.cos, self.sin = apply, cos, sin  # cos, sin: (Tq, rotary_dim)

    def new(self, x: Tensor) -> Tensor:
        return self._apply(x, self.cos, self.sin)
