"""Log-length attention scaling (the `logn` variant of every model) against plain math: the scale
max(1, log n / log L) with n = position + 1, every attention backend against softmax(s(n) q.k /
sqrt(d) + bias + mask) v, the trained model up to L, and the KV cache equal to a full forward."""

from __future__ import annotations

import math

import pytest
import torch

from model.attention import AttentionInputs, CausalSelfAttention
from model.config import AttnBackend
from model.positional import Positions, all_variants
from model.positional.log_length import log_length_scale
from tests.model_helpers import ENCODINGS, tiny_model
from tests.test_kv_cache import cached_logits, decoder_logits


def test_scale_is_max_1_log_n_over_log_L_with_n_one_based():
    positions = torch.tensor([0, 1, 30, 31, 32, 63, 255, 1000])
    expected = [max(1.0, math.log(p + 1) / math.log(32)) for p in positions.tolist()]
    torch.testing.assert_close(log_length_scale(positions, 32), torch.tensor(expected), atol=0, rtol=1e-6)
    assert log_length_scale(torch.arange(32), 32).eq(1).all()  # the whole training window: unchanged
    assert log_length_scale(torch.tensor([32]), 32).item() > 1  # the 33rd token: sharper


def reference_layer(attn: CausalSelfAttention, x, positions: Positions, train_len: int, bias=None, rotation=None):
    """Plain math for one layer without a cache: q, k, v from c_attn, logits s(n) q.k / sqrt(d)
    with s(n) = max(1, log n / log L) per query row, plus bias, causal mask, softmax, c_proj."""
    B, T, C = x.shape
    H = attn.n_head
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in attn.c_attn(x).split(C, dim=2))
    if rotation is not None:
        q, k = rotation.new(q), rotation.new(k)
    scale = torch.tensor([max(1.0, math.log(p + 1) / math.log(train_len)) for p in positions.q.tolist()])
    logits = scale[:, None] * (q @ k.transpose(-2, -1)) / math.sqrt(C // H)  # (B, H, T, T)
    if bias is not None:
        logits = logits + bias
    logits = logits.masked_fill(positions.k[None, :] > positions.q[:, None], float("-inf"))
    y = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    return attn.c_proj(y)


@pytest.mark.parametrize("backend", ["sdpa", "flex", "explicit"])
@pytest.mark.parametrize("encoding", ["nope", "alibi", "rope", "fire"])
def test_every_backend_scales_the_logits_like_plain_math(encoding, backend):
    model = tiny_model(encoding)
    if backend == "flex" and not model.pos.has_score_mod:
        pytest.skip("no score_mod: this encoding never runs on FlexAttention")
    attn = model.blocks[0].attn
    positions = Positions.make(0, 80, "cpu")  # 2.5 x the training length
    x = torch.randn(2, 80, model.cfg.n_embd, generator=torch.Generator().manual_seed(0))
    inp = AttentionInputs(model.pos, positions, flex=backend == "flex", log_length=model.cfg.block_size)
    inp.needs_scores = backend == "explicit"  # force the explicit-scores path
    with torch.no_grad():
        got = attn(x, inp, cache=None, layer=0)
        bias = model.pos.bias(positions)
        want = reference_layer(attn, x, positions, model.cfg.block_size, bias, model.pos.rotation(positions))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_logn_is_the_trained_model_up_to_L_and_differs_past_it(encoding):
    model = tiny_model(encoding)
    assert model.variants[-1] == "logn" and "logn" in all_variants()
    idx = torch.randint(0, 101, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(idx[:, : model.max_positions or 48])[0]
        model.set_variant("logn", 1.5)
        scaled = model(idx[:, : model.max_positions or 48])[0]
        model.set_variant(None)
    L = model.cfg.block_size
    torch.testing.assert_close(scaled[:, :L], plain[:, :L], atol=1e-6, rtol=0)
    if scaled.shape[1] > L:
        assert not torch.allclose(scaled[:, L:], plain[:, L:], atol=1e-3)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_logn_cache_equals_full_forward(encoding):
    """The scale follows the absolute query position, in the decoder, the fixed-shape step and
    raw cached chunks alike (fp32, batch 3, 48 tokens past block_size 32)."""
    model = tiny_model(encoding)
    model.set_variant("logn", 1.5)
    n_tokens = min(48, model.max_positions or 48)
    idx = torch.randint(0, 101, (3, n_tokens), generator=torch.Generator().manual_seed(1))
    # 2e-4, not the 1e-4 of tests/test_kv_cache.py: the log n factor (up to 1.12 here) scales
    # fp32 rounding of the summation order too; CoPE's gated position sums reached 1.0001e-4 in CI
    tol = 2e-4
    with torch.no_grad():
        full = model(idx)[0]
        for fixed in (False, True):
            stepped = decoder_logits(model, idx, prefill=20, fixed=fixed)
            assert (stepped - full[:, 19:]).abs().max() <= tol, f"{encoding} fixed={fixed}"
        for chunk in (1, 5):
            assert (cached_logits(model, idx, prefill=20, chunk=chunk) - full).abs().max() <= tol


def test_logn_fixed_step_compiles_to_one_graph():
    from torch._dynamo.testing import CompileCounter

    from model.fixed_step import FixedDecodeStep
    from model.generate import CachedDecoder

    torch._dynamo.reset()
    model = tiny_model("nope")
    model.set_variant("logn", 2.0)
    idx = torch.randint(0, 101, (2, 40), generator=torch.Generator().manual_seed(3))
    decoder = CachedDecoder(model, 2, 40)
    decoder.fixed_step = FixedDecodeStep(model, decoder.cache)
    counter = CompileCounter()
    decoder.fixed_step.compile(backend=counter)
    decoder.prefill(idx[:, :10])
    stepped = torch.stack([decoder.step(idx[:, t]) for t in range(10, 40)], dim=1)
    assert counter.frame_count == 1
    with torch.no_grad():
        torch.testing.assert_close(stepped, model(idx)[0][:, 10:], atol=1e-4, rtol=0)


def test_rope_variants_and_logn_switch_cleanly():
    model = tiny_model("rope")
    model.set_variant("yarn", 2.0)
    model.set_variant("logn", 2.0)  # logn runs the trained rope, not the previous yarn
    assert model.pos.scaling.kind == "none" and model.log_length == model.cfg.block_size
    model.set_variant(None)
    assert model.log_length is None
    with pytest.raises(ValueError, match="unknown variant 'bogus'"):
        model.set_variant("bogus", 2.0)
    with pytest.raises(ValueError, match="unknown variant 'yarn'"):
        tiny_model("alibi").set_variant("yarn", 2.0)


def test_flex_model_with_logn_equals_sdpa_model():
    model = tiny_model("alibi")
    model.set_variant("logn", 2.0)
    idx = torch.randint(0, 101, (2, 60), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        sdpa = model(idx)[0]
        model.cfg.attn_backend = AttnBackend.flex
        flex = model(idx)[0]
    torch.testing.assert_close(flex, sdpa, atol=1e-4, rtol=1e-4)
