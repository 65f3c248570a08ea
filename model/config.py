"""Typed configuration of the model, and the base of every positional encoding's config.

Each positional encoding declares its own `Config` dataclass beside its class (model/positional/),
so a key that belongs to another encoding (say `pos.num_buckets` with `pos=rope`) is rejected
instead of silently ignored. configs/schema.py registers them with Hydra's ConfigStore from the
registry; the model itself only needs the plain dataclasses and never imports Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    # None: the data's vocabulary (meta.json's, set when the model is built: training/build.py).
    vocab_size: Optional[int] = None
    dropout: float = 0.0  # on embeddings, attention weights and residual branches; 0 disables
    bias: bool = True  # biases in the linear layers and LayerNorms
    tie_embeddings: bool = True  # the output layer is the token table (Press & Wolf 2017); false: its own V x C matrix
    attn_backend: AttnBackend = AttnBackend.auto  # auto: SDPA on CPU, FlexAttention for bias encodings on CUDA


@dataclass
class PosConfig:
    """Base of every positional-encoding config; `name` selects the class in the registry
    (model/positional/registry.py)."""

    name: str  # each encoding's Config sets its own
