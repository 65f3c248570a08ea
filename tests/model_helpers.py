"""Small models of every encoding for the model tests."""

from __future__ import annotations

import torch

from model import GPT
from model.config import ModelConfig
from model.positional import config_class, encoding_names
from model.positional.rope import RotaryPositions
from model.positional.rope_scaling import RopeScaling, RopeScalingKind

ENCODINGS = encoding_names()
SCALINGS = [k.value for k in RopeScalingKind]


def tiny_config(**overrides) -> ModelConfig:
    fields = dict(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=101, dropout=0.0)
    fields.update(overrides)
    return ModelConfig(**fields)


def tiny_model(encoding: str, scaling: str = "none", factor: float = 2.0, seed: int = 0, **cfg) -> GPT:
    """A small GPT in eval mode whose attention depends strongly on position: GPT-2's 0.02 init
    makes attention nearly uniform, which would hide positional bugs, so q/k/v weights, T5's
    table, FIRE's MLP and CoPE's embeddings are drawn larger."""
    torch.manual_seed(seed)
    if encoding == "rope":
        pos = RotaryPositions.Config(scaling=RopeScaling(kind=RopeScalingKind(scaling), factor=factor))
    else:
        pos = config_class(encoding)()
    model = GPT(tiny_config(**cfg), pos).eval()
    for block in model.blocks:
        torch.nn.init.normal_(block.attn.c_attn.weight, std=0.3)
    if encoding == "t5":
        torch.nn.init.normal_(model.pos.relative_attention_bias.weight, std=1.0)
    if encoding == "fire":  # a bias of order 1 that varies with distance and query position
        for p in model.pos.mlp.parameters():
            torch.nn.init.normal_(p, std=1.0)
    if encoding == "cope":  # its embeddings start at zero: no positional signal at all
        torch.nn.init.normal_(model.pos.pos_emb, std=1.0)
    return model
