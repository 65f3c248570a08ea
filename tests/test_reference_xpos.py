"""xPos against x-transformers' rotary embedding with `use_xpos` (Sun et al. 2023), computed here:
its RotaryEmbedding(dim, use_xpos=True, scale_base) and apply_rotary_pos_emb, queries scaled by
the scale and keys by its inverse. Conventions mapped: x-transformers pairs channels (2i, 2i + 1)
(our `interleaved`; `half` is the same up to a fixed channel permutation) and centres positions at
half the current length T // 2, ours at block_size // 2 (the same at T = block_size; at any other
length only q . k is comparable, where the centre cancels)."""

from __future__ import annotations

import pytest
import torch
from x_transformers.x_transformers import RotaryEmbedding, apply_rotary_pos_emb

from model.config import ModelConfig
from model.positional import Positions
from model.positional.rope import Pairing
from model.positional.xpos import XPos
from tests.model_helpers import tiny_model

N_HEAD, N_EMBD, BLOCK = 4, 64, 64
HEAD_DIM = N_EMBD // N_HEAD  # 16


def our_xpos(pairing=Pairing.interleaved, scale_base=32.0, rotary_dim=None) -> XPos:
    cfg = ModelConfig(n_layer=1, n_head=N_HEAD, n_embd=N_EMBD, block_size=BLOCK, vocab_size=11)
    return XPos(cfg, XPos.Config(pairing=pairing, scale_base=scale_base, rotary_dim=rotary_dim))


def xt_xpos(q: torch.Tensor, k: torch.Tensor, scale_base: float, rotary_dim: int = HEAD_DIM):
    """x-transformers' Attention: freqs, scale = rotary(positions); q * scale, k * scale^-1."""
    rotary = RotaryEmbedding(rotary_dim, use_xpos=True, scale_base=scale_base)
    freqs, scale = rotary(torch.arange(q.shape[-2]))
    return apply_rotary_pos_emb(q, freqs, scale), apply_rotary_pos_emb(k, freqs, scale**-1.0)


def ours(xpos: XPos, q: torch.Tensor, k: torch.Tensor, start: int = 0):
    rot = xpos.rotation(Positions.make(start, q.shape[-2], "cpu"))
    return rot.new(q), rot.new_keys(k)


def half_to_interleaved(x: torch.Tensor) -> torch.Tensor:
    """Channel i of the `half` layout pairs with i + r/2; `interleaved` pairs 2i with 2i + 1."""
    return torch.stack((x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2 :]), dim=-1).flatten(-2)


def random_qk(length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, N_HEAD, length, HEAD_DIM, generator=g) for _ in range(2)]


@pytest.mark.parametrize("scale_base", [8.0, 32.0, 512.0])
@pytest.mark.parametrize("rotary_dim", [HEAD_DIM, 8])
def test_equals_x_transformers_at_the_training_length(scale_base, rotary_dim):
    q, k = random_qk(BLOCK)
    got = ours(our_xpos(scale_base=scale_base, rotary_dim=rotary_dim), q, k)
    want = xt_xpos(q, k, scale_base, rotary_dim)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length", [10, 200, 8 * BLOCK])
def test_scores_equal_x_transformers_at_any_length(length):
    """Past (and below) the training length x-transformers' centre moves with T, ours stays: the
    rotated vectors differ by a per-pair factor, the causal scores q . k (what attention reads) not."""
    q, k = random_qk(length)
    (oq, ok), (xq, xk) = ours(our_xpos(), q, k), xt_xpos(q, k, 32.0)
    causal = torch.ones(length, length, dtype=torch.bool).tril()  # key m <= query n
    got, want = (oq @ ok.transpose(-2, -1))[..., causal], (xq @ xk.transpose(-2, -1))[..., causal]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_half_pairing_is_interleaved_up_to_a_channel_permutation():
    q, k = random_qk(BLOCK)
    hq, hk = ours(our_xpos(Pairing.half), q, k)
    iq, ik = ours(our_xpos(Pairing.interleaved), half_to_interleaved(q), half_to_interleaved(k))
    torch.testing.assert_close(half_to_interleaved(hq), iq, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(half_to_interleaved(hk), ik, atol=1e-6, rtol=1e-6)


def test_the_papers_decay_formula():
    """Sun et al. 2023, Eq. (paper's xPos): per pair i, q.k at (n, m) is RoPE's score times
    zeta_i^((n - m) / gamma), zeta_i = (2i/r + 0.4) / 1.4, written out here for one pair."""
    gamma, n, m = 32.0, 300, 7
    xpos = our_xpos(scale_base=gamma)
    rot = xpos.rotation(Positions.make(0, n + 1, "cpu"))
    i = 3  # pair (2i, 2i + 1) in the interleaved layout
    zeta = (2 * i / HEAD_DIM + 0.4) / 1.4
    theta = 10000.0 ** (-2 * i / HEAD_DIM)
    # the q-table at n times the k-table at m: zeta^((n - m)/gamma) cos(theta (n - m)) ...
    cos = rot.cos[n, 2 * i] * rot.key_cos[m, 2 * i] + rot.sin[n, 2 * i] * rot.key_sin[m, 2 * i]
    expected = zeta ** ((n - m) / gamma) * torch.cos(torch.tensor(theta * (n - m), dtype=torch.float64))
    torch.testing.assert_close(cos.double(), expected, atol=1e-5, rtol=1e-4)


def test_scales_stay_finite_at_8x_training_length_in_every_dtype():
    """With the default scale base (512) and the fixed centre, the largest factor at 8 x L is
    exp(1.25 (8 L - L/2) / 512); the tables are finite in fp32, bf16 and fp16 at L = 256."""
    cfg = ModelConfig(n_layer=1, n_head=4, n_embd=128, block_size=256, vocab_size=11)
    rot = XPos(cfg, XPos.Config()).rotation(Positions.make(0, 8 * 256, "cpu"))
    largest = rot.key_cos.abs().max().item()
    assert 50 < largest < 200  # exp(1.2528 * 1919.5 / 512) = 110: the decay is real, and bounded
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert all(torch.isfinite(t.to(dtype)).all() for t in (rot.cos, rot.sin, rot.key_cos, rot.key_sin))


def test_kv_cache_equals_full_forward_far_past_the_centre():
    """A strong decay (scale base 8) at 3 x the training length, batch 3: the cached keys keep the
    scale of their own position (a centre that moved with the length would make them stale)."""
    model = tiny_model("xpos", block_size=16)
    model.pos.scale_base = 8.0
    idx = torch.randint(0, 101, (3, 48), generator=torch.Generator().manual_seed(0))
    from tests.test_kv_cache import cached_logits

    with torch.no_grad():
        full = model(idx)[0]
        for chunk in (1, 7):
            diff = (cached_logits(model, idx, prefill=5, chunk=chunk) - full).abs().max()
            assert diff <= 1e-4, f"chunk {chunk}: {diff}"
