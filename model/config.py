"""Typed configuration of the model and of its positional encoding.

Each positional encoding has its own dataclass, so a key that belongs to another encoding (say
`pos.num_buckets` with `pos=rope`) is rejected instead of silently ignored. The dataclasses are
registered with Hydra's ConfigStore in `configs/schema.py`; the model itself only needs the
plain dataclasses and never imports Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


class AttnBackend(str, Enum):
    auto = "auto"  # SDPA on CPU; FlexAttention for bias encodings on CUDA
    sdpa = "sdpa"  # scaled_dot_product_attention (is_causal, or an additive float mask)
    flex = "flex"  # FlexAttention with a score_mod (bias encodings) and a causal block mask


@dataclass
class ModelConfig:
    """GPT-2 names. `block_size` is the training context length."""

    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads; must divide n_embd
    n_embd: int = 128  # width of the residual stream
    block_size: int = 256  # training context length (tokens)
    vocab_size: int = 50257  # GPT-2's tokenizer
    dropout: float = 0.0  # on embeddings, attention weights and residual branches; 0 disables
    bias: bool = True  # biases in the linear layers and LayerNorms
    attn_backend: AttnBackend = AttnBackend.auto  # auto: SDPA on CPU, FlexAttention for bias encodings on CUDA


@dataclass
class PosConfig:
    """Base of every positional-encoding config; `name` selects the class in the registry."""

    name: str = "nope"


@dataclass
class LearnedPos(PosConfig):
    name: str = "learned"


@dataclass
class SinusoidalPos(PosConfig):
    name: str = "sinusoidal"
    base: float = 10000.0
    # Vaswani et al.: token embeddings drawn with std n_embd^-0.5 and multiplied by sqrt(n_embd),
    # so they enter at unit scale beside the [-1, 1] table (RMS 0.71). GPT-2's 0.02 init, even
    # scaled, would enter at 0.02 sqrt(n_embd) (0.16 at 64 wide) and drown in the table.
    scale_embeddings: bool = True


@dataclass
class T5Pos(PosConfig):
    name: str = "t5"
    num_buckets: int = 32
    max_distance: int = 128


class Pairing(str, Enum):
    half = "half"  # (x[i], x[i + d/2]): Hugging Face Llama, GPT-NeoX
    interleaved = "interleaved"  # (x[2i], x[2i+1]): RoFormer paper, Meta Llama


class RopeScalingKind(str, Enum):
    none = "none"
    linear = "linear"  # position interpolation, Chen et al. 2023
    ntk = "ntk"  # NTK-aware base change
    dynamic = "dynamic"  # dynamic NTK: the scale grows with the current length
    yarn = "yarn"  # Peng et al. 2023


@dataclass
class RopeScaling:
    """Inference-time context extension. `factor` is s = target length / training length.

    `original_max_len` is the training context (0 means the model's `block_size`).
    `beta_fast` / `beta_slow` bound YaRN's ramp (in rotations over the original context).
    """

    kind: RopeScalingKind = RopeScalingKind.none
    factor: float = 1.0
    original_max_len: int = 0
    beta_fast: float = 32.0
    beta_slow: float = 1.0


@dataclass
class RopePos(PosConfig):
    name: str = "rope"
    base: float = 10000.0
    rotary_dim: Optional[int] = None  # None: the whole head dimension
    pairing: Pairing = Pairing.half
    scaling: RopeScaling = field(default_factory=RopeScaling)


@dataclass
class AlibiPos(PosConfig):
    name: str = "alibi"


@dataclass
class NopePos(PosConfig):
    name: str = "nope"


POS_CONFIGS: dict[str, type[PosConfig]] = {
    "learned": LearnedPos,
    "sinusoidal": SinusoidalPos,
    "t5": T5Pos,
    "rope": RopePos,
    "alibi": AlibiPos,
    "nope": NopePos,
}
