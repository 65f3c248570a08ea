"""Learned, sinusoidal, T5 and ALiBi against independent references: Hugging Face GPT-2 with our
weights, the sinusoid closed form in Python's math module, Hugging Face T5's bucket function, and
Hugging Face BLOOM's ALiBi plus the paper's slope rule."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.t5.modeling_t5 import T5Attention

from model import GPT
from model.config import ModelConfig
from model.positional import Positions
from model.positional.alibi import ALiBi, alibi_slopes
from model.positional.learned import LearnedPositions
from model.positional.sinusoidal import SinusoidalPositions, sinusoid_table
from model.positional.t5 import T5RelativeBias, t5_bucket

AlibiPos, LearnedPos = ALiBi.Config, LearnedPositions.Config
SinusoidalPos, T5Pos = SinusoidalPositions.Config, T5RelativeBias.Config

# ---------------------------------------------------------------- learned: Hugging Face GPT-2


def gpt2_twin(model: GPT) -> GPT2LMHeadModel:
    """A Hugging Face GPT-2 of the same shape holding our weights (Conv1D stores (in, out): the
    transpose of nn.Linear; c_attn is q, k, v concatenated in both)."""
    cfg = model.cfg
    hf_cfg = GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, activation_function="gelu", layer_norm_epsilon=1e-5, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
    )
    hf_cfg._attn_implementation = "eager"
    hf = GPT2LMHeadModel(hf_cfg).eval()
    t = hf.transformer
    with torch.no_grad():
        t.wte.weight.copy_(model.wte.weight)
        t.wpe.weight.copy_(model.pos.wpe.weight)
        for ours, theirs in zip(model.blocks, t.h):
            for a, b in ((ours.ln_1, theirs.ln_1), (ours.ln_2, theirs.ln_2)):
                b.weight.copy_(a.weight)
                b.bias.copy_(a.bias)
            for a, b in (
                (ours.attn.c_attn, theirs.attn.c_attn), (ours.attn.c_proj, theirs.attn.c_proj),
                (ours.mlp.c_fc, theirs.mlp.c_fc), (ours.mlp.c_proj, theirs.mlp.c_proj),
            ):
                b.weight.copy_(a.weight.t())
                b.bias.copy_(a.bias)
        t.ln_f.weight.copy_(model.ln_f.weight)
        t.ln_f.bias.copy_(model.ln_f.bias)
    assert hf.lm_head.weight.data_ptr() == t.wte.weight.data_ptr()  # tied head, as ours
    return hf


def test_learned_gpt_equals_hf_gpt2():
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=97, dropout=0.0, bias=True)
    model = GPT(cfg, LearnedPos()).eval()
    with torch.no_grad():  # random everything (GPT-2 init zeroes biases, which would hide a misplaced one)
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if ".ln_" in name or name.startswith("ln_") else 0.0))
    hf = gpt2_twin(model)
    idx = torch.randint(0, cfg.vocab_size, (3, cfg.block_size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = model(idx)
        theirs = hf(idx).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- sinusoidal: closed form


def closed_form(positions: list[int], d: int, base: float = 10000.0) -> torch.Tensor:
    """PE(p, 2i) = sin(p / base^(2i/d)), PE(p, 2i+1) = cos(p / base^(2i/d)), in double precision."""
    rows = []
    for p in positions:
        row = [0.0] * d
        for i in range(d // 2):
            row[2 * i] = math.sin(p / base ** (2 * i / d))
            row[2 * i + 1] = math.cos(p / base ** (2 * i / d))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("d", [6, 64])
def test_sinusoid_table_equals_closed_form(d):
    positions = list(range(64)) + [511, 1000, 2047]
    table = sinusoid_table(torch.tensor(positions), d, 10000.0)
    # float32 angles near p = 2000 are exact to about 2e-4
    torch.testing.assert_close(table, closed_form(positions, d), atol=3e-4, rtol=0)


def test_sinusoidal_embed_uses_absolute_query_positions():
    cfg = ModelConfig(n_layer=1, n_head=4, n_embd=32, block_size=16, vocab_size=11)
    enc = SinusoidalPositions(cfg, SinusoidalPos(base=500.0))
    got = enc.embed(Positions.make(start=20, length=7, device="cpu"))  # a cached step: positions 20 .. 26
    torch.testing.assert_close(got, closed_form(list(range(20, 27)), 32, base=500.0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale_embeddings", [True, False])
def test_sinusoidal_model_input_is_scaled_tokens_plus_table(scale_embeddings):
    """What reaches the first block is wte(idx) * sqrt(n_embd) + PE (Vaswani et al. Sec. 3.4)."""
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=11, dropout=0.0)
    model = GPT(cfg, SinusoidalPos(scale_embeddings=scale_embeddings)).eval()
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    idx = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(idx)
    scale = math.sqrt(32) if scale_embeddings else 1.0
    expected = model.wte.weight[idx] * scale + closed_form(list(range(12)), 32)
    torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale_embeddings,token_rms", [(True, 1.0), (False, 0.02)])
def test_sinusoidal_tokens_enter_at_the_papers_scale(scale_embeddings, token_rms):
    """Vaswani et al.: embeddings drawn with std d^-0.5, multiplied by sqrt(d): unit RMS beside the
    table's RMS of sqrt(1/2). Unscaled, the tokens keep GPT-2's 0.02."""
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=1, n_head=4, n_embd=256, block_size=16, vocab_size=4096, dropout=0.0)
    model = GPT(cfg, SinusoidalPos(scale_embeddings=scale_embeddings))
    scaled = model.wte.weight * model.pos.token_scale()
    assert abs(scaled.pow(2).mean().sqrt().item() - token_rms) < 0.02 * token_rms
    table = closed_form(list(range(16)), 256)
    assert abs(table.pow(2).mean().sqrt().item() - math.sqrt(0.5)) < 1e-3


# ---------------------------------------------------------------- t5: Hugging Face T5 buckets

BUCKET_CASES = [(32, 128), (16, 64), (64, 256), (8, 20)]


def hf_t5_bucket(distance: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """HF's relative_position is key - query, the negative of our distance q - k."""
    return T5Attention._relative_position_bucket(
        -distance, bidirectional=False, num_buckets=num_buckets, max_distance=max_distance
    )


@pytest.mark.parametrize("num_buckets,max_distance", BUCKET_CASES)
def test_t5_bucket_equals_hf(num_buckets, max_distance):
    distance = torch.arange(4097)
    ours = t5_bucket(distance, num_buckets, max_distance)
    theirs = hf_t5_bucket(distance, num_buckets, max_distance)
    assert torch.equal(ours, theirs), (ours != theirs).nonzero()[:5].flatten().tolist()
    assert set(ours.tolist()) == set(range(num_buckets))  # every bucket used, the last at far distances


@pytest.mark.parametrize("start,length", [(0, 40), (13, 6)])
def test_t5_bias_gathers_table_rows_per_head(start, length):
    """bias[h, i, j] = table[bucket(q_i - k_j), h], rows picked one by one from HF's buckets."""
    n_head, num_buckets, max_distance = 3, 16, 24
    cfg = ModelConfig(n_layer=1, n_head=n_head, n_embd=24, block_size=16, vocab_size=11)
    enc = T5RelativeBias(cfg, T5Pos(num_buckets=num_buckets, max_distance=max_distance))
    torch.nn.init.normal_(enc.relative_attention_bias.weight, generator=torch.Generator().manual_seed(0))
    positions = Positions.make(start, length, "cpu")
    q, k = positions.q.tolist(), positions.k.tolist()
    distance = torch.tensor([[qi - kj for kj in k] for qi in q])
    buckets = hf_t5_bucket(distance, num_buckets, max_distance).tolist()
    table = enc.relative_attention_bias.weight.tolist()  # (num_buckets, n_head)
    expected = torch.tensor(
        [[[table[buckets[i][j]][h] for j in range(len(k))] for i in range(len(q))] for h in range(n_head)]
    )
    with torch.no_grad():
        torch.testing.assert_close(enc.bias(positions), expected, atol=0, rtol=0)


# ---------------------------------------------------------------- alibi: BLOOM and the paper

HEADS = [8, 12, 6]


def paper_slopes(n: int) -> list[float]:
    """Press et al. 2022: for n a power of 2, slope_h = 2^(-8h/n), h = 1 .. n; otherwise the slopes
    of the largest power of 2 below n, then the odd-numbered slopes of twice that power."""
    p = 1 << (n.bit_length() - 1)
    exponents = [8 * h / p for h in range(1, p + 1)]
    exponents += [8 * h / (2 * p) for h in range(1, 2 * (n - p), 2)]
    return [2.0 ** -e for e in exponents]


def bloom(n_head: int, length: int) -> torch.Tensor:
    """BLOOM's (H, 1, length) bias slope_h * key_position."""
    return build_alibi_tensor(torch.ones(1, length, dtype=torch.long), n_head, torch.float32)


@pytest.mark.parametrize("n_head", HEADS)
def test_alibi_slopes_equal_bloom_and_paper(n_head):
    ours = alibi_slopes(n_head)
    torch.testing.assert_close(ours, bloom(n_head, 2)[:, 0, 1], atol=0, rtol=1e-6)  # slope * position 1
    torch.testing.assert_close(ours, torch.tensor(paper_slopes(n_head)), atol=0, rtol=1e-6)


@pytest.mark.parametrize("start,length", [(0, 24), (9, 5)])
@pytest.mark.parametrize("n_head", HEADS)
def test_alibi_bias_equals_bloom_up_to_row_constant(n_head, start, length):
    """BLOOM adds slope * k, ours -slope * (q - k): they differ by -slope * q in each query row, which
    softmax ignores. Shifting BLOOM's row by its value at k = q gives ours exactly."""
    cfg = ModelConfig(n_layer=1, n_head=n_head, n_embd=8 * n_head, block_size=16, vocab_size=11)
    positions = Positions.make(start, length, "cpu")
    ours = ALiBi(cfg, AlibiPos()).bias(positions)  # (H, Tq, Tk)
    theirs = bloom(n_head, positions.total)  # (H, 1, Tk)
    shifted = theirs - theirs[:, 0, positions.q][..., None]  # (H, Tq, Tk): slope * (k - q)
    torch.testing.assert_close(ours, shifted, atol=1e-5, rtol=1e-6)
    scores = torch.randn(n_head, length, positions.total, generator=torch.Generator().manual_seed(0))
    causal = torch.where(positions.k[None, :] <= positions.q[:, None], 0.0, float("-inf"))
    torch.testing.assert_close(
        torch.softmax(scores + ours + causal, -1), torch.softmax(scores + theirs + causal, -1)
    )
