"""Randomized positional encodings (Ruoss et al., ACL 2023, "Randomized Positional Encodings Boost
Length Generalization of Transformers"): a training option for encodings of absolute positions.

With `pos.randomize_to = N` (> 0), each training sequence of length T sits at a sorted random
subset of [0, N) instead of at 0 .. T - 1, so positions up to N - 1 are trained with sequences of
the training length; evaluation and generation use 0 .. T - 1 as always. N is several times the
training length, at least the longest length evaluated.

An encoding offers it by setting `randomizable = True` and deriving its Config from
`RandomizableConfig`; the registry checks that the two go together. The draw itself is part of
the seeded training batch (data/loader.py: `TrainBatches.positions`), so a resumed run sees the
same positions; the model receives them as `Positions.of_sequences` (B, T).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from model.config import ModelConfig, PosConfig


@dataclass
class RandomizableConfig(PosConfig):
    """Base of the Configs of encodings that can be trained on randomized positions."""

    # 0: off (positions 0 .. T - 1); N >= model.block_size: each training sequence takes a sorted
    # random subset of [0, N) (Ruoss et al. 2023)
    randomize_to: int = 0


def randomize_range(model: ModelConfig, pos: RandomizableConfig) -> Optional[int]:
    """`pos.randomize_to` checked against the training length: None when off."""
    if pos.randomize_to == 0:
        return None
    if pos.randomize_to < model.block_size:
        raise ValueError(
            f"pos.randomize_to={pos.randomize_to} must be 0 (off) or at least model.block_size="
            f"{model.block_size}: a sequence of block_size tokens needs that many distinct positions"
        )
    return pos.randomize_to
