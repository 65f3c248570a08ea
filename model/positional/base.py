"""The one interface every positional encoding implements, and the per-forward positions.

An encoding is a `PositionalEncoding` subclass with a nested `Config` dataclass (its typed
options, `name` selecting it), registered with `@register` (registry.py). It declares what it
does as class attributes, and implements only the hooks of its family (the others return None):

| family     | flag             | hook                                                         |
| ---------- | ---------------- | ------------------------------------------------------------ |
| absolute   | `adds_embedding` | `embed(positions) -> (Tq, C)` added to the token embeddings  |
| rotary     | `rotates`        | `rotation(positions) -> Rotation` applied to queries and keys |
| bias       | `adds_bias`      | `bias(positions) -> (H, Tq, Tk)` added to the scores; with    |
|            | `has_score_mod`  | `score_mod(positions)`: the same bias for FlexAttention       |
| contextual | `needs_scores`   | `score_bias(q, scores, positions, layer) -> (B, H, Tq, Tk)`,  |
|            |                  | a bias computed from the query-key scores themselves          |
| none       | (none)           | nothing: the causal mask alone                                |

An encoding that takes absolute positions may also be `randomizable`: trained on per-sequence
(B, T) positions, a sorted random subset of [0, pos.randomize_to) per sequence (randomized.py).
An encoding may also bound the length (`max_positions`), change the token embeddings' scale
(`token_scale`, `token_init_std`), offer inference-time context-extension variants (`variants`,
`set_variant`, `variant_note`; the model adds log-length scaling to every encoding, log_length.py),
and ask for the cache to be recomputed when the sequence grows
(`recompute_on_growth`). Everything outside model/positional/ reads these, never a name.

The model builds a `Positions` once per forward and hands it to the encoding; no encoding infers a
position from a tensor's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable, ClassVar, Optional

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

    Per-sequence positions (`Positions.of_sequences`, training with randomized positions) give
    each of the B sequences its own increasing positions: q = k of shape (B, T), no cache. Only
    `randomizable` encodings receive them.
    """

    start: Optional[int]
    length: int
    q: Tensor  # (Tq,) int64: start + arange(length); (B, T) per sequence
    k: Tensor  # (Tk,) int64: arange(start + length), or arange(cache capacity) when fixed; (B, T) per sequence

    @classmethod
    def make(cls, start: int, length: int, device: torch.device | str) -> "Positions":
        k = torch.arange(start + length, device=device)
        return cls(start=start, length=length, q=k[start:], k=k)

    @classmethod
    def fixed(cls, q: Tensor, capacity: int) -> "Positions":
        """Queries at the device-side positions `q` (Tq,), keys at every one of `capacity` slots."""
        return cls(start=None, length=q.shape[0], q=q, k=torch.arange(capacity, device=q.device))

    @classmethod
    def of_sequences(cls, positions: Tensor) -> "Positions":
        """Each row of the (B, T) int64 `positions` (increasing) is one sequence's positions."""
        return cls(start=0, length=positions.shape[1], q=positions, k=positions)

    @property
    def per_sequence(self) -> bool:
        return self.q.dim() == 2

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


class Family(str, Enum):
    """Where an encoding acts (for reports and benchmark peers; the model reads the flags)."""

    absolute = "absolute"
    rotary = "rotary"
    bias = "bias"
    contextual = "contextual"
    none = "none"


class PositionalEncoding(nn.Module):
    """Base class: no positional signal at all (every hook returns None)."""

    family: ClassVar[Family] = Family.none
    adds_embedding: ClassVar[bool] = False  # embed() returns a (Tq, C) table
    rotates: ClassVar[bool] = False  # rotation() returns a Rotation
    adds_bias: ClassVar[bool] = False  # bias() returns (H, Tq, Tk)
    has_score_mod: ClassVar[bool] = False  # score_mod() expresses bias() for FlexAttention
    needs_scores: ClassVar[bool] = False  # score_bias() reads the scores: explicit attention only
    #: Takes per-sequence (B, T) positions (`Positions.of_sequences`); its Config then derives
    #: from randomized.RandomizableConfig, whose `randomize_to` sets `randomize_to` here.
    randomizable: ClassVar[bool] = False
    #: Inference-time context extensions, each a function of factor = length / training length
    #: that equals the trained model at factor 1; the first is the trained model itself.
    variants: ClassVar[tuple[str, ...]] = ()
    #: Part of compare.py's default set of encodings.
    in_default_compare: ClassVar[bool] = True

    #: Longest sequence the encoding can represent (None: unbounded).
    max_positions: Optional[int] = None
    #: N: each training sequence sits at a sorted random subset of [0, N) (None: at 0 .. T - 1).
    randomize_to: Optional[int] = None

    def set_variant(self, name: Optional[str], factor: float = 1.0) -> None:
        """Switch to context extension `name` for `factor` x the training length (None: back to
        the trained configuration). Takes effect at the next forward."""
        if name is not None:
            raise ValueError(f"{type(self).__name__} has no inference-time variants, got {name!r}")

    def variant_note(self, name: str) -> str:
        """What variant `name` does, in a few words, for eval.json and the report."""
        return name

    def embedding_parameters(self) -> int:
        """Parameters that count as embeddings (a learned position table), for param counts."""
        return 0

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

    def score_bias(self, q: Tensor, scores: Tensor, positions: Positions, layer: int) -> Optional[Tensor]:
        """Content-aware bias: from the (B, H, Tq, D) queries and the (B, H, Tq, Tk) scaled
        query-key scores of `layer` (causal mask not applied), a (B, H, Tq, Tk) bias added to
        them, or None. Runs only on the explicit-scores attention path."""
        return None


class Rotation:
    """cos/sin tables for the query positions of one forward; `new(x)` rotates the (B, H, Tq, D)
    queries of the new tokens, `new_keys(x)` their keys: with the same tables, unless the encoding
    gives the keys their own (xPos scales queries and keys oppositely)."""

    def __init__(self, apply: Callable[[Tensor, Tensor, Tensor], Tensor], cos: Tensor, sin: Tensor,
                 key_cos: Optional[Tensor] = None, key_sin: Optional[Tensor] = None):
        # cos, sin: (Tq, rotary_dim), or (B, 1, Tq, rotary_dim) for per-sequence positions
        self._apply, self.cos, self.sin = apply, cos, sin
        self.key_cos = cos if key_cos is None else key_cos
        self.key_sin = sin if key_sin is None else key_sin

    def new(self, x: Tensor) -> Tensor:
        return self._apply(x, self.cos, self.sin)

    def new_keys(self, x: Tensor) -> Tensor:
        return self._apply(x, self.key_cos, self.key_sin)
