"""CoPE against x-transformers' `CoPE` (Appendix B of Golovneva et al. 2024), computed here.

Conventions mapped: x-transformers' module holds one (max_pos, dim_head) embedding per attention
layer, shared by the heads, as ours holds one per layer (`pos_emb[layer]`); it reads the scaled
scores with the causal mask already filled with -finfo.max (so masked gates are exactly 0), ours
reads the unmasked scores and the positions; both take the unscaled queries."""

from __future__ import annotations

import math

import pytest
import torch
from x_transformers.x_transformers import CoPE as XCoPE

from model.attention import AttentionInputs, explicit_attend
from model.config import ModelConfig
from model.positional import Positions
from model.positional.cope import CoPE
from tests.model_helpers import tiny_model

B, H, D, T = 2, 4, 16, 40


def setup(npos_max: int, seed: int = 0, scale_qk: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    cfg = ModelConfig(n_layer=3, n_head=H, n_embd=H * D, block_size=T, vocab_size=11)
    ours = CoPE(cfg, CoPE.Config(npos_max=npos_max))
    with torch.no_grad():
        ours.pos_emb.normal_(generator=g)
    q, k, v = (torch.randn(B, H, T, D, generator=g) * scale_qk for _ in range(3))
    return ours, q, k, v


def x_cope_bias(ours: CoPE, layer: int, q, k) -> torch.Tensor:
    xt = XCoPE(dim=D, heads=H, max_pos=ours.npos_max)
    with torch.no_grad():
        xt.pos_emb.copy_(ours.pos_emb[layer])
    sim = q @ k.transpose(-2, -1) / math.sqrt(D)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # key after query
    sim = sim.masked_fill(causal, -torch.finfo(sim.dtype).max)
    return xt(q, sim), sim


@pytest.mark.parametrize("npos_max", [4, 16, 64])  # 4 and 16 clamp, 64 (> T) never does
@pytest.mark.parametrize("scale_qk", [0.3, 3.0])  # gates near 1/2, and gates near 0 or 1
def test_bias_equals_x_transformers(npos_max, scale_qk):
    ours, q, k, _ = setup(npos_max, scale_qk=scale_qk)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    positions = Positions.make(0, T, "cpu")
    visible = torch.ones(T, T, dtype=torch.bool).tril()
    for layer in range(3):
        got = ours.score_bias(q, scores, positions, layer)
        want, _ = x_cope_bias(ours, layer, q, k)
        torch.testing.assert_close(got[..., visible], want[..., visible], atol=1e-5, rtol=1e-5)


def test_explicit_attention_equals_x_transformers_attention():
    """softmax(masked sim + CoPE(q, masked sim)) v, as x-transformers' Attend does."""
    ours, q, k, v = setup(16)
    inp = AttentionInputs(ours, Positions.make(0, T, "cpu"), flex=False)
    got = explicit_attend(q, k, v, inp, layer=1, dropout_p=0.0)
    bias, sim = x_cope_bias(ours, 1, q, k)
    want = (sim + bias).softmax(dim=-1) @ v
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_positions_count_gates_from_key_to_query():
    """The paper's definition written out: p_ij = sum_{t=j..i} sigmoid(q_i . k_t / sqrt(d)), and
    e[p] interpolated between its integer neighbours, for one (i, j)."""
    ours, q, k, _ = setup(64)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    i, j, layer = 30, 11, 2
    p = scores[0, 1, i, j : i + 1].sigmoid().sum()
    lo, frac = int(p.floor()), p - p.floor()
    e = ours.pos_emb[layer]
    want = q[0, 1, i] @ (frac * e[lo + 1] + (1 - frac) * e[lo])
    got = ours.score_bias(q, scores, Positions.make(0, T, "cpu"), layer)[0, 1, i, j]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_embeddings_and_the_gates():
    ours, q, k, _ = setup(16)
    q.requires_grad_(True)
    k.requires_grad_(True)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    ours.score_bias(q, scores, Positions.make(0, T, "cpu"), 0).tril().sum().backward()
    assert ours.pos_emb.grad[0].abs().sum() > 0 and ours.pos_emb.grad[1:].abs().sum() == 0
    assert k.grad.abs().sum() > 0  # only through the gates (the fractional weights)


def test_model_with_cope_trains_on_the_explicit_path():
    model = tiny_model("cope").train()
    idx = torch.randint(0, 101, (2, 20), generator=torch.Generator().manual_seed(0))
    _, loss = model(idx, idx)
    loss.backward()
    assert model.pos.pos_emb.grad.abs().sum() > 0
