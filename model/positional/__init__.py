"""Positional encodings behind one interface (see base.py), built by name from their config."""

from __future__ import annotations

from model.config import ModelConfig, PosConfig
from model.positional.absolute import LearnedPositions, SinusoidalPositions
from model.positional.base import PositionalEncoding, PositionOutOfRange, Positions, Rotation
from model.positional.bias import ALiBi, T5RelativeBias
from model.positional.rotary import RotaryPositions

BUILDERS = {
    "learned": lambda cfg, pos: LearnedPositions(cfg),
    "sinusoidal": SinusoidalPositions,
    "t5": T5RelativeBias,
    "rope": RotaryPositions,
    "alibi": lambda cfg, pos: ALiBi(cfg),
    "nope": lambda cfg, pos: PositionalEncoding(),  # NoPE (Kazemnejad et al. 2023): the causal mask alone
}


def build_positional(cfg: ModelConfig, pos: PosConfig) -> PositionalEncoding:
    if pos.name not in BUILDERS:
        raise ValueError(f"unknown positional encoding {pos.name!r}; choose one of {sorted(BUILDERS)}")
    return BUILDERS[pos.name](cfg, pos)


__all__ = ["PositionalEncoding", "PositionOutOfRange", "Positions", "Rotation", "build_positional"]
