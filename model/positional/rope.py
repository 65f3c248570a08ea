"""Rotary position embedding (Su et al. 2021, RoFormer) with inference-time context extension.

Pairing: `half` (default) rotates (x[i], x[i + r/2]) as Hugging Face Llama and GPT-NeoX do, which
keeps each rotation a pair of contiguous slices (no strided gathers) and lets checkpoints map
one-to-one onto those models; `interleaved` rotates (x[2i], x[2i+1]) as the RoFormer paper and
Meta's Llama. The two are the same function up to a fixed permutation of q and k channels.
With `rotary_dim < head_dim` only the first `rotary_dim` channels rotate (GPT-NeoX partial rotary).
Randomizable (randomized.py): per-sequence positions give (B, 1, T, r) tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Callable, Optional

import torch
from torch import Tensor

from model.config import ModelConfig
from model.positional.base import Family, PositionalEncoding, Positions, Rotation
from model.positional.randomized import RandomizableConfig, randomize_range
from model.positional.registry import register
from model.positional.rope_scaling import SCALINGS, RopeScaling, RopeScalingKind, YarnRamp


class Pairing(str, Enum):
    half = "half"  # (x[i], x[i + d/2]): Hugging Face Llama, GPT-NeoX
    interleaved = "interleaved"  # (x[2i], x[2i+1]): RoFormer paper, Meta Llama


def rotate_half_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (..., T, D), cos/sin (T, r) with each frequency repeated over both halves."""
    r, cos, sin = cos.shape[-1], cos.to(x.dtype), sin.to(x.dtype)
    xr, rest = x[..., :r], x[..., r:]
    x1, x2 = xr[..., : r // 2], xr[..., r // 2 :]
    out = xr * cos + torch.cat((-x2, x1), dim=-1) * sin
    return out if rest.shape[-1] == 0 else torch.cat((out, rest), dim=-1)


def rotate_interleaved_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (..., T, D), cos/sin (T, r) with each frequency repeated at channels 2i and 2i+1."""
    r, cos, sin = cos.shape[-1], cos.to(x.dtype), sin.to(x.dtype)
    xr, rest = x[..., :r], x[..., r:]
    pairs = xr.unflatten(-1, (r // 2, 2))  # (..., T, r/2, 2)
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (..., T, r)
    out = xr * cos + rotated * sin
    return out if rest.shape[-1] == 0 else torch.cat((out, rest), dim=-1)


def rotary_dim_of(cfg: ModelConfig, rotary_dim: Optional[int]) -> int:
    """The rotated channels per head (`pos.rotary_dim`; None: the whole head), checked."""
    head_dim = cfg.n_embd // cfg.n_head
    dim = head_dim if rotary_dim is None else rotary_dim
    if dim % 2 or not 0 < dim <= head_dim:
        raise ValueError(f"pos.rotary_dim must be even and in (0, head_dim={head_dim}], got {dim}")
    return dim


def pair_tables(per_pair: Tensor, pairing: str, per_sequence: bool) -> tuple[Tensor, Callable]:
    """A (..., T, r/2) table of one value per rotated pair -> the (T, r) table (B, 1, T, r per
    sequence) that `pairing`'s rotation reads, each value at both channels of its pair, and that
    rotation."""
    if pairing == Pairing.half.value:
        table, apply = torch.cat((per_pair, per_pair), dim=-1), rotate_half_pairs  # (..., T, r)
    else:
        table, apply = per_pair.repeat_interleave(2, dim=-1), rotate_interleaved_pairs  # (..., T, r)
    return (table.unsqueeze(1) if per_sequence else table), apply  # (B, T, r) -> (B, 1, T, r)


@register
class RotaryPositions(PositionalEncoding):
    """Rotates queries and keys by position-dependent angles; `scaling` (and `set_variant` at
    inference) selects the context extension."""

    family = Family.rotary
    rotates = True
    randomizable = True
    variants = tuple(k.value for k in RopeScalingKind)

    @dataclass
    class Config(RandomizableConfig):
        name: str = "rope"
        base: float = 10000.0
        rotary_dim: Optional[int] = None  # None: the whole head dimension
        pairing: Pairing = Pairing.half
        scaling: RopeScaling = field(default_factory=RopeScaling)

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        self.rotary_dim = rotary_dim_of(cfg, pos.rotary_dim)
        self.base, self.pairing, self.block_size = pos.base, Pairing(pos.pairing).value, cfg.block_size
        self.randomize_to = randomize_range(cfg, pos)
        self.trained_scaling = pos.scaling
        self.set_scaling(pos.scaling)

    def set_variant(self, name: Optional[str], factor: float = 1.0) -> None:
        """`name` a RopeScalingKind with extension factor `factor` (the config's YaRN betas and
        original length kept); None restores the configured scaling."""
        if name is None:
            return self.set_scaling(self.trained_scaling)
        kind = RopeScalingKind(name)
        self.set_scaling(replace(self.trained_scaling, kind=kind, factor=factor if kind is not RopeScalingKind.none else 1.0))

    def variant_note(self, name: str) -> str:
        kind = RopeScalingKind(name)
        if kind is RopeScalingKind.none:
            return "the trained model (no scaling)"
        if kind is RopeScalingKind.yarn:
            sc = self.trained_scaling
            return (f"YaRN, {YarnRamp(sc.yarn_ramp).value} ramp (pos.scaling.yarn_ramp), "
                    f"beta_fast {sc.beta_fast:g}, beta_slow {sc.beta_slow:g}, factor = length / L")
        return f"{kind.value} scaling, factor = length / L"

    def set_scaling(self, scaling: RopeScaling) -> None:
        """Switch the context extension (no retraining; takes effect at the next forward)."""
        kind = RopeScalingKind(scaling.kind)
        if kind != RopeScalingKind.none and scaling.factor < 1:
            raise ValueError(f"pos.scaling.factor must be >= 1, got {scaling.factor}")
        self.scaling = scaling
        self.original_len = scaling.original_max_len or self.block_size
        self._scale_fn = SCALINGS[kind]

    def recompute_on_growth(self, total: int) -> bool:
        # Dynamic NTK sets the frequencies of every position from the current length. Re-rotating
        # cached keys would not be enough: deeper layers' keys and values were computed from
        # hidden states under the old frequencies. So past the original length, recompute.
        return self.scaling.kind == RopeScalingKind.dynamic and total > self.original_len

    def rotation(self, positions: Positions) -> Rotation:
        # Only dynamic NTK reads the length, and a fixed decode step never runs past the original
        # length with it (recompute_on_growth re-prefills there instead), so use that length.
        seq_len = self.original_len if positions.is_fixed else positions.total
        inv_freq, attention_factor = self._scale_fn(
            self.base, self.rotary_dim, self.scaling, self.original_len, seq_len, positions.q.device
        )
        angles = positions.q.float()[..., None] * inv_freq  # (..., Tq, r/2)
        angles, apply = pair_tables(angles, self.pairing, positions.per_sequence)
        return Rotation(apply, angles.cos() * attention_factor, angles.sin() * attention_factor)
