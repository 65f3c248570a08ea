"""Learned absolute positions (Radford et al. 2019, GPT-2): a table of `block_size` vectors added
to the token embeddings; it cannot represent a position past its length."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from model.config import ModelConfig, PosConfig
from model.positional.base import Family, PositionalEncoding, PositionOutOfRange, Positions
from model.positional.registry import register


@register
class LearnedPositions(PositionalEncoding):
    """GPT-2's learned table of `block_size` position vectors."""

    family = Family.absolute
    adds_embedding = True

    @dataclass
    class Config(PosConfig):
        name: str = "learned"

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        self.max_positions = cfg.block_size
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)

    def embedding_parameters(self) -> int:
        return self.wpe.weight.numel()

    def embed(self, positions: Positions) -> Tensor:
        # a fixed decode step cannot check here (its positions are on the device): its caller does
        if positions.total is not None and positions.total > self.max_positions:
            raise PositionOutOfRange(
                f"position {positions.total - 1} is past the learned position table, which holds "
                f"{self.max_positions} positions (block_size): shorten the input to at most "
                f"{self.max_positions} tokens"
            )
        return self.wpe(positions.q)  # (Tq, C)
