"""RoPE against independent references: Hugging Face Llama's and GPT-NeoX's rotary embeddings
(every HF rope type we share: default, linear, dynamic, yarn; partial rotary), the NTK base formula,
Meta Llama's complex-number rotation for the interleaved pairing, and the relative property."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPTNeoXConfig, LlamaConfig
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb as neox_apply_rotary
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from model.config import ModelConfig
from model.positional import Positions
from model.positional.rope import Pairing, RotaryPositions
from model.positional.rope_scaling import RopeScaling, RopeScalingKind

RopePos = RotaryPositions.Config

N_HEAD, N_EMBD, BLOCK = 4, 64, 64
HEAD_DIM = N_EMBD // N_HEAD  # 16
BASE = 10000.0
LENGTHS = (32, BLOCK, 200)  # below, at and past the original (training) length


def our_rope(kind="none", factor=1.0, pairing=Pairing.half, rotary_dim=None, **scaling) -> RotaryPositions:
    cfg = ModelConfig(n_layer=1, n_head=N_HEAD, n_embd=N_EMBD, block_size=BLOCK, vocab_size=11)
    sc = RopeScaling(kind=RopeScalingKind(kind), factor=factor, **scaling)
    return RotaryPositions(cfg, RopePos(base=BASE, rotary_dim=rotary_dim, pairing=pairing, scaling=sc))


def rotate(rope: RotaryPositions, x: torch.Tensor) -> torch.Tensor:
    """Our rotation of (B, H, T, D) vectors sitting at positions 0 .. T - 1."""
    return rope.rotation(Positions.make(0, x.shape[-2], "cpu")).new(x)


def random_qk(length: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, N_HEAD, length, HEAD_DIM, generator=torch.Generator().manual_seed(seed))


def hf_llama_rotate(rope_parameters: dict, x: torch.Tensor, rotary_dim: int = HEAD_DIM) -> torch.Tensor:
    """Hugging Face Llama: cos/sin from LlamaRotaryEmbedding, applied with apply_rotary_pos_emb to the
    first `rotary_dim` channels (the rest passes through, as in GPT-NeoX partial rotary).

    A fresh module per call: HF's dynamic state only grows (its original length is
    max_position_embeddings, here our block_size)."""
    config = LlamaConfig(
        hidden_size=N_EMBD,
        num_attention_heads=N_HEAD,
        max_position_embeddings=BLOCK,
        rope_parameters={"rope_theta": BASE, **rope_parameters},
    )
    cos, sin = LlamaRotaryEmbedding(config)(x, torch.arange(x.shape[-2])[None])  # (1, T, r)
    assert cos.shape[-1] == rotary_dim
    rotated, _ = apply_rotary_pos_emb(x[..., :rotary_dim], x[..., :rotary_dim], cos, sin)
    return torch.cat((rotated, x[..., rotary_dim:]), dim=-1)


# (our scaling, Hugging Face rope_parameters)
HF_CASES = {
    "default": (dict(), {"rope_type": "default"}),
    "linear2": (dict(kind="linear", factor=2.0), {"rope_type": "linear", "factor": 2.0}),
    "linear4": (dict(kind="linear", factor=4.0), {"rope_type": "linear", "factor": 4.0}),
    "dynamic2": (dict(kind="dynamic", factor=2.0), {"rope_type": "dynamic", "factor": 2.0}),
    "dynamic4": (dict(kind="dynamic", factor=4.0), {"rope_type": "dynamic", "factor": 4.0}),
    "yarn2": (dict(kind="yarn", factor=2.0), {"rope_type": "yarn", "factor": 2.0}),
    "yarn4": (dict(kind="yarn", factor=4.0), {"rope_type": "yarn", "factor": 4.0}),
    "yarn8": (dict(kind="yarn", factor=8.0), {"rope_type": "yarn", "factor": 8.0}),
    "yarn4-betas-orig32": (
        dict(kind="yarn", factor=4.0, beta_fast=16.0, beta_slow=2.0, original_max_len=32),
        {"rope_type": "yarn", "factor": 4.0, "beta_fast": 16.0, "beta_slow": 2.0,
         "original_max_position_embeddings": 32},
    ),
}


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("case", HF_CASES)
def test_half_pairing_equals_hf_llama(case, length):
    ours, hf = HF_CASES[case]
    x = random_qk(length)
    torch.testing.assert_close(rotate(our_rope(**ours), x), hf_llama_rotate(hf, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factor", [2.0, 4.0, 16.0])
def test_ntk_is_rope_with_base_times_s_pow_d_over_d_minus_2(factor):
    """NTK-aware scaling is plain RoPE with base * s^(d/(d-2)): the angle of position 1 gives
    theta_i, and the whole rotation equals HF's default rope type with that base."""
    d = HEAD_DIM
    ntk_base = BASE * factor ** (d / (d - 2))
    rope = our_rope("ntk", factor)
    rot = rope.rotation(Positions.make(0, 2, "cpu"))
    theta = torch.atan2(rot.sin[1, : d // 2], rot.cos[1, : d // 2]).double()  # position 1: angle theta_i
    expected = torch.tensor([ntk_base ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    torch.testing.assert_close(theta, expected, atol=1e-6, rtol=1e-5)
    x = random_qk(200)
    reference = hf_llama_rotate({"rope_type": "default", "rope_theta": ntk_base}, x)
    torch.testing.assert_close(rotate(rope, x), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rotary_dim", [4, 8, 12])
def test_partial_rotary_equals_hf_gpt_neox(rotary_dim):
    """GPT-NeoX rotates the first `partial_rotary_factor * head_dim` channels and passes the rest."""
    config = GPTNeoXConfig(
        hidden_size=N_EMBD,
        num_attention_heads=N_HEAD,
        max_position_embeddings=BLOCK,
        rope_parameters={
            "rope_type": "default", "rope_theta": BASE, "partial_rotary_factor": rotary_dim / HEAD_DIM
        },
    )
    x = random_qk(200)
    cos, sin = GPTNeoXRotaryEmbedding(config)(x, torch.arange(200)[None])
    reference, _ = neox_apply_rotary(x, x, cos, sin)
    ours = rotate(our_rope(rotary_dim=rotary_dim), x)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(ours[..., rotary_dim:], x[..., rotary_dim:])


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("kind,factor", [("linear", 4.0), ("dynamic", 2.0), ("yarn", 4.0)])
def test_partial_rotary_scaled_equals_hf_llama(kind, factor, length):
    """HF's scaled rope types honour partial_rotary_factor: the scaling works on rotary_dim."""
    rotary_dim = 8
    x = random_qk(length)
    hf = {"rope_type": kind, "factor": factor, "partial_rotary_factor": rotary_dim / HEAD_DIM}
    ours = rotate(our_rope(kind, factor, rotary_dim=rotary_dim), x)
    torch.testing.assert_close(ours, hf_llama_rotate(hf, x, rotary_dim), atol=1e-5, rtol=1e-5)
    assert torch.equal(ours[..., rotary_dim:], x[..., rotary_dim:])


def meta_llama_rotate(x: torch.Tensor, rotary_dim: int) -> torch.Tensor:
    """Meta Llama's / RoFormer's rotation: channel pairs (2i, 2i+1) as complex numbers times
    e^(i p theta_i), theta_i = base^(-2i/r); channels past rotary_dim untouched."""
    T = x.shape[-2]
    theta = 1.0 / (BASE ** (torch.arange(0, rotary_dim, 2).double() / rotary_dim))
    angles = torch.outer(torch.arange(T).double(), theta)  # (T, r/2)
    freqs_cis = torch.polar(torch.ones_like(angles), angles)
    pairs = x[..., :rotary_dim].double().unflatten(-1, (rotary_dim // 2, 2))  # (..., T, r/2, 2)
    pairs = torch.view_as_complex(pairs.contiguous())
    rotated = torch.view_as_real(pairs * freqs_cis).flatten(-2).float()  # (..., T, r)
    return torch.cat((rotated, x[..., rotary_dim:]), dim=-1)


@pytest.mark.parametrize("rotary_dim", [HEAD_DIM, 8])
def test_interleaved_pairing_equals_complex_reference(rotary_dim):
    x = random_qk(200)
    ours = rotate(our_rope(pairing=Pairing.interleaved, rotary_dim=rotary_dim), x)
    torch.testing.assert_close(ours, meta_llama_rotate(x, rotary_dim), atol=1e-4, rtol=1e-4)


def half_to_interleaved(rotary_dim: int) -> torch.Tensor:
    """Channel permutation: interleaved channel 2i holds half channel i, 2i+1 holds i + r/2."""
    half = torch.arange(rotary_dim // 2)
    paired = torch.stack((half, half + rotary_dim // 2), dim=-1).flatten()
    return torch.cat((paired, torch.arange(rotary_dim, HEAD_DIM)))


@pytest.mark.parametrize("rotary_dim", [HEAD_DIM, 8])
@pytest.mark.parametrize("kind", [k.value for k in RopeScalingKind])
def test_interleaved_and_half_agree_up_to_channel_permutation(kind, rotary_dim):
    """Permuting q and k channels once maps one pairing onto the other, so attention scores agree."""
    perm = half_to_interleaved(rotary_dim)
    half = our_rope(kind, 4.0, Pairing.half, rotary_dim)
    interleaved = our_rope(kind, 4.0, Pairing.interleaved, rotary_dim)
    q, k = random_qk(200, seed=1), random_qk(200, seed=2)
    q_half, k_half = rotate(half, q), rotate(half, k)
    q_int, k_int = rotate(interleaved, q[..., perm]), rotate(interleaved, k[..., perm])
    torch.testing.assert_close(q_int, q_half[..., perm])
    scores_half = q_half @ k_half.transpose(-1, -2)
    torch.testing.assert_close(q_int @ k_int.transpose(-1, -2), scores_half, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("pairing", list(Pairing))
@pytest.mark.parametrize("scaling", [dict(), dict(kind="yarn", factor=4.0)], ids=["none", "yarn"])
def test_scores_depend_only_on_relative_offset(scaling, pairing):
    """<R(m) q, R(n) k> = g(q, k, m - n): every diagonal of the score matrix of one fixed q and one
    fixed k placed at all positions is constant, for 64 random (q, k) pairs and 255 offsets."""
    T = 128
    gen = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 64, 1, 1, HEAD_DIM, generator=gen)  # 64 pairs of random vectors
    rope = our_rope(pairing=pairing, **scaling)
    qs, ks = rotate(rope, q.expand(64, 1, T, HEAD_DIM)), rotate(rope, k.expand(64, 1, T, HEAD_DIM))
    scores = qs @ ks.transpose(-1, -2)  # (64, 1, T, T): scores[m, n] = <R(m) q, R(n) k>
    torch.testing.assert_close(scores[..., 1:, 1:], scores[..., :-1, :-1], atol=1e-3, rtol=1e-4)
    # and the score does change with the offset (a rotation that did nothing would pass the above)
    assert (scores[..., 0, 0] - scores[..., 5, 0]).abs().max() > 0.5
    # offset 0 is the plain dot product times YaRN's attention factor squared
    factor = 0.1 * math.log(scaling["factor"]) + 1 if scaling else 1.0
    plain = (q * k).sum(-1) * factor**2  # (64, 1, 1)
    diagonal = scores.diagonal(dim1=-2, dim2=-1)  # (64, 1, T)
    torch.testing.assert_close(diagonal, plain.expand(64, 1, T), atol=1e-4, rtol=1e-4)


def paper_yarn_angles(length: int, factor: float, orig_len: int = BLOCK, alpha: float = 1.0, beta: float = 32.0):
    """Peng et al. 2023 (YaRN), Sec. 3.2 in plain math: theta_d = base^(-2d/|D|), r(d) =
    L theta_d / (2 pi) rotations over the original context, gamma(r) = 0 below alpha, 1 above
    beta, (r - alpha) / (beta - alpha) between; h(theta_d) = (1 - gamma) theta_d / s + gamma theta_d.
    Returns the (T, |D|/2) angles p h(theta_d) and the attention factor 0.1 ln s + 1."""
    rows = []
    for p in range(length):
        row = []
        for d in range(HEAD_DIM // 2):
            theta = BASE ** (-2 * d / HEAD_DIM)
            r = orig_len * theta / (2 * math.pi)
            gamma = 0.0 if r < alpha else 1.0 if r > beta else (r - alpha) / (beta - alpha)
            row.append(p * ((1 - gamma) * theta / factor + gamma * theta))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64), 0.1 * math.log(factor) + 1


@pytest.mark.parametrize("factor", [2.0, 4.0, 8.0])
def test_yarn_rotations_ramp_equals_the_papers_gamma(factor):
    rope = our_rope("yarn", factor, yarn_ramp="rotations")
    rotation = rope.rotation(Positions.make(0, 200, "cpu"))
    angles, mscale = paper_yarn_angles(200, factor)
    half = HEAD_DIM // 2  # half pairing: each frequency fills channel i and i + D/2
    # float32 angles up to 200 rad are exact to about 2e-5
    torch.testing.assert_close(rotation.cos[:, :half].double(), angles.cos() * mscale, atol=5e-5, rtol=0)
    torch.testing.assert_close(rotation.sin[:, :half].double(), angles.sin() * mscale, atol=5e-5, rtol=0)


def test_yarn_ramps_differ_and_default_is_the_authors_dims_ramp():
    """At head dim 16 and L = 64 the two ramps give different frequencies (so the option matters);
    the default is the dims ramp of the released code, which HF's test above reproduces."""
    from model.positional.rope_scaling import YarnRamp, yarn

    assert RopeScaling().yarn_ramp is YarnRamp.dims
    sc = dict(kind=RopeScalingKind.yarn, factor=8.0)
    dims, _ = yarn(BASE, HEAD_DIM, RopeScaling(**sc), BLOCK, BLOCK)
    rotations, _ = yarn(BASE, HEAD_DIM, RopeScaling(**sc, yarn_ramp=YarnRamp.rotations), BLOCK, BLOCK)
    assert ((dims - rotations).abs() / dims).max() > 0.3
    assert "rotations ramp" in our_rope("yarn", 4.0, yarn_ramp="rotations").variant_note("yarn")
    with pytest.raises(ValueError, match="beta_fast"):
        our_rope("yarn", 4.0, yarn_ramp="rotations", beta_fast=1.0, beta_slow=2.0).rotation(Positions.make(0, 4, "cpu"))
