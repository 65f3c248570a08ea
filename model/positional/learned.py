"""Learned absolute positions (Radford et al. 2019, GPT-2): a table of `block_size` vectors added
to the token embeddings; it cannot represent a position past its length. Trained on randomized
positions (`pos.randomize_to = N`, randomized.py) the table has N rows, every one of them trained."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from model.config import ModelConfig
from model.positional.base import Family, PositionalEncoding, PositionOutOfRange, Positions
from model.positional.randomized import RandomizableConfig, randomize_range
from model.positional.registry import register


@register
class LearnedPositions(PositionalEncoding):
    """GPT-2's learned table of `block_size` (or `randomize_to`) position vectors."""

    family = Family.absolute
    adds_embedding = True
    randomizable = True

    @dataclass
    class Config(RandomizableConfig):
        name: str = "learned"

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        self.randomize_to = randomize_range(cfg, pos)
        self.max_positions = self.randomize_to or cfg.block_size
        self.table_source = "pos.randomize_to" if self.randomize_to else "block_size"
        self.wpe = nn.Embedding(self.max_positions, cfg.n_embd)

    def embedding_parameters(self) -> int:
        return self.wpe.weight.numel()

    def embed(self, positions: Positions) -> Tensor:
        # a fixed decode step cannot check here (its positions are on the device): its caller does
        if positions.total is not None and positions.total > self.max_positions:
            raise PositionOutOfRange(
                f"position {positions.total - 1} is past the learned position table, which holds "
                f"{self.max_positions} positions ({self.table_source}): shorten the input to at most "
                f"{self.max_positions} tokens"
            )
        return self.wpe(positions.q)  # (Tq, C), or (B, T, C) per sequence
