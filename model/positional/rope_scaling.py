"""RoPE context extension: each variant maps (base, dim, scale, length) to inverse frequencies.

All variants return `(inv_freq, attention_factor)`: `inv_freq` has dim/2 entries, made on `device`
(so a CUDA forward does no CPU work and no synchronising host-to-device copy), and the attention
factor multiplies cos and sin (so the q.k logits by its square), which only YaRN uses.
`s` is the extension factor (target length / original training length `L`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import torch
from torch import Tensor


class RopeScalingKind(str, Enum):
    none = "none"
    linear = "linear"  # position interpolation, Chen et al. 2023
    ntk = "ntk"  # NTK-aware base change
    dynamic = "dynamic"  # dynamic NTK: the scale grows with the current length
    yarn = "yarn"  # Peng et al. 2023


class YarnRamp(str, Enum):
    """Where YaRN's interpolation ramp runs (both go from interpolation at `beta_slow` rotations
    over the original context to extrapolation at `beta_fast`)."""

    # linear in the dimension index between the rounded correction dimensions: the authors' code
    # (jquesnelle/yarn) and Hugging Face
    dims = "dims"
    # linear in the number of rotations r: the paper's gamma(r) (Peng et al. 2023, Sec. 3.2)
    rotations = "rotations"


@dataclass
class RopeScaling:
    """Inference-time context extension. `factor` is s = target length / training length.

    `original_max_len` is the training context (0 means the model's `block_size`).
    `beta_fast` / `beta_slow` bound YaRN's ramp (in rotations over the original context), and
    `yarn_ramp` says where it runs (see YarnRamp; default: the authors' released code).
    """

    kind: RopeScalingKind = RopeScalingKind.none
    factor: float = 1.0
    original_max_len: int = 0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    yarn_ramp: YarnRamp = YarnRamp.dims


def base_inv_freq(base: float, dim: int, device=None) -> Tensor:
    """Su et al. 2021: theta_i = base^(-2i/d), i = 0 .. d/2 - 1."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))


def no_scaling(base: float, dim: int, sc: RopeScaling, orig_len: int, seq_len: int, device=None):
    return base_inv_freq(base, dim, device), 1.0


def linear(base: float, dim: int, sc: RopeScaling, orig_len: int, seq_len: int, device=None):
    """Position interpolation (Chen et al. 2023): positions divided by s, i.e. theta_i / s."""
    return base_inv_freq(base, dim, device) / sc.factor, 1.0


def ntk(base: float, dim: int, sc: RopeScaling, orig_len: int, seq_len: int, device=None):
    """NTK-aware scaling: the base grows to base * s^(d / (d - 2)), so the lowest frequency is
    interpolated by s while the highest is barely touched."""
    return base_inv_freq(base * sc.factor ** (dim / (dim - 2)), dim, device), 1.0


def dynamic(base: float, dim: int, sc: RopeScaling, orig_len: int, seq_len: int, device=None):
    """Dynamic NTK: NTK scaling whose base follows the current length l > L,
    base * (s * l / L - (s - 1))^(d / (d - 2)); unchanged up to L (as Hugging Face's "dynamic")."""
    length = max(seq_len, orig_len)
    scaled = base * ((sc.factor * length / orig_len) - (sc.factor - 1)) ** (dim / (dim - 2))
    return base_inv_freq(scaled, dim, device), 1.0


def yarn(base: float, dim: int, sc: RopeScaling, orig_len: int, seq_len: int, device=None):
    """YaRN (Peng et al. 2023, Sec. 3.2-3.4): "NTK-by-parts" interpolation, each frequency
    theta_d mixed as (1 - gamma) theta_d / s + gamma theta_d, gamma = 1 (extrapolate) for
    dimensions that rotate more than `beta_fast` times over L and 0 (interpolate) for fewer than
    `beta_slow`, with a ramp in between (`sc.yarn_ramp`, see YarnRamp); attention temperature
    sqrt(1/t) = 0.1 ln(s) + 1."""
    inv_freq = base_inv_freq(base, dim, device)
    extrapolate = YARN_RAMPS[YarnRamp(sc.yarn_ramp)](base, dim, sc, orig_len, inv_freq)  # gamma, (dim/2,)
    inv_freq = inv_freq / sc.factor * (1 - extrapolate) + inv_freq * extrapolate
    attention_factor = 0.1 * math.log(sc.factor) + 1.0 if sc.factor > 1 else 1.0
    return inv_freq, attention_factor


def yarn_ramp_dims(base: float, dim: int, sc: RopeScaling, orig_len: int, inv_freq: Tensor) -> Tensor:
    """The YaRN authors' code (jquesnelle/yarn, scaled_rope; Hugging Face's `_compute_yarn_parameters`
    copies it): the dimensions whose wavelength fits beta_fast and beta_slow times into L, rounded
    outwards (floor, ceil), and gamma linear in the dimension index between them, clamped to [0, 1]."""

    def dim_for_rotations(rotations: float) -> float:
        # the dimension index whose wavelength fits `rotations` times into the original context
        return dim * math.log(orig_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(dim_for_rotations(sc.beta_fast)), 0)
    high = min(math.ceil(dim_for_rotations(sc.beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device=inv_freq.device) - low) / (high - low)).clamp(0, 1)
    return 1 - ramp


def yarn_ramp_rotations(base: float, dim: int, sc: RopeScaling, orig_len: int, inv_freq: Tensor) -> Tensor:
    """The paper's ramp (Peng et al. 2023, Sec. 3.2, "NTK-by-parts"): dimension d rotates
    r = L / lambda_d = L theta_d / (2 pi) times over the original context, and
    gamma(r) = (r - alpha) / (beta - alpha) clamped to [0, 1], alpha = beta_slow, beta = beta_fast."""
    if sc.beta_fast <= sc.beta_slow:
        raise ValueError(f"pos.scaling.beta_fast ({sc.beta_fast}) must exceed beta_slow ({sc.beta_slow})")
    rotations = orig_len * inv_freq / (2 * math.pi)
    return ((rotations - sc.beta_slow) / (sc.beta_fast - sc.beta_slow)).clamp(0, 1)


YARN_RAMPS = {YarnRamp.dims: yarn_ramp_dims, YarnRamp.rotations: yarn_ramp_rotations}


SCALINGS: dict[RopeScalingKind, Callable[..., tuple[Tensor, float]]] = {
    RopeScalingKind.none: no_scaling,
    RopeScalingKind.linear: linear,
    RopeScalingKind.ntk: ntk,
    RopeScalingKind.dynamic: dynamic,
    RopeScalingKind.yarn: yarn,
}
