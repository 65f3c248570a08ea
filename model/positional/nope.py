"""NoPE (Kazemnejad et al., NeurIPS 2023): no positional encoding, the causal mask alone."""

from __future__ import annotations

from dataclasses import dataclass

from model.config import ModelConfig, PosConfig
from model.positional.base import PositionalEncoding
from model.positional.registry import register


@register
class NoPositions(PositionalEncoding):
    """Every hook returns None: order is known only through causal masking."""

    @dataclass
    class Config(PosConfig):
        name: str = "nope"

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
