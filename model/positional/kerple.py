"""KERPLE (Chi et al., NeurIPS 2022, "KERPLE: Kernelized Relative Positional Embedding for Length
Extrapolation"): a learned conditionally positive definite kernel of the distance d = i - j >= 0,
added to the attention scores, with two learned positive parameters per head:

    log    -r1 log(1 + r2 d)   (the logarithmic variant)
    power  -r1 d^r2            (the power variant, 0 < r2 <= 2)

Constraints and initialisation as in the authors' code (chijames/KERPLE, megatron/mpu/layers.py):
every parameter is at least eps = 0.01 and the power's exponent at most 2; the log kernel's r1
starts uniform in (0, 2) and r2 in (0, 1), the power kernel's r1 in (0, 1) and its exponent r2 in
(0, 2). As there, the constraint is a projection: in training each forward first clamps the
parameters themselves back into range (so a step past a bound is undone at the next forward, and
the parameter never drifts far outside); the bias clamps its copy too, so evaluating a model in any
state uses valid parameters.

The parameters are shared by every layer, as in the authors' code (megatron/model/gpt2_model.py
builds one module and hands it to every layer), and each head has its own r1 and r2. There is no
FlexAttention `score_mod`: its backward through learned captured tensors cannot be checked on CPU,
so the bias runs as SDPA's float mask on every device.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn

from model.config import ModelConfig, PosConfig
from model.positional.base import Family, PositionalEncoding, Positions
from model.positional.registry import register


class Kernel(str, Enum):
    log = "log"  # -r1 log(1 + r2 d)
    power = "power"  # -r1 d^r2


EPS = 1e-2  # the authors' lower bound on every parameter
MAX_POWER = 2.0  # a power kernel -d^p is conditionally positive definite only for 0 < p <= 2


@register
class KERPLE(PositionalEncoding):
    """Per-head kernel bias -r1 log(1 + r2 d) or -r1 d^r2 of the distance d = i - j."""

    family = Family.bias
    adds_bias = True

    @dataclass
    class Config(PosConfig):
        name: str = "kerple"
        kernel: Kernel = Kernel.log

    def __init__(self, cfg: ModelConfig, pos: Config):
        super().__init__()
        self.kernel = Kernel(pos.kernel)
        r1_scale, r2_scale = (2.0, 1.0) if self.kernel is Kernel.log else (1.0, 2.0)
        self.r1 = nn.Parameter(torch.rand(cfg.n_head) * r1_scale)
        self.r2 = nn.Parameter(torch.rand(cfg.n_head) * r2_scale)

    def _bounds(self) -> tuple[float, float]:
        """(lower, upper) bound of r2."""
        return EPS, (MAX_POWER if self.kernel is Kernel.power else float("inf"))

    @torch.compiler.disable
    def _project(self) -> None:
        """The authors' projection: clamp the parameters themselves into range."""
        with torch.no_grad():
            self.r1.clamp_(min=EPS)
            self.r2.clamp_(*self._bounds())

    def bias(self, positions: Positions) -> Tensor:
        if self.training and torch.is_grad_enabled():
            self._project()
        r1 = self.r1.clamp(min=EPS)[:, None, None]  # (H, 1, 1)
        r2 = self.r2.clamp(*self._bounds())[:, None, None]
        distance = (positions.q[:, None] - positions.k[None, :]).clamp(min=0).float()  # (Tq, Tk), masked part 0
        if self.kernel is Kernel.log:
            return -r1 * torch.log1p(r2 * distance)  # (H, Tq, Tk)
        return -r1 * distance.pow(r2)  # (H, Tq, Tk); 0^r2 = 0
