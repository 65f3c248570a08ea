"""GPT structure: parameter accounting, weight tying, loss masking and config errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from model import GPT
from model.positional import config_class

LearnedPos, RopePos, SinusoidalPos, T5Pos = (config_class(n) for n in ("learned", "rope", "sinusoidal", "t5"))
from tests.model_helpers import ENCODINGS, tiny_config, tiny_model


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_param_counts_match_the_architecture(encoding):
    cfg = tiny_config()
    C, V, L = cfg.n_embd, cfg.vocab_size, cfg.n_layer
    # per block: qkv (3C^2 + 3C), proj (C^2 + C), mlp (8C^2 + 5C), two LayerNorms (4C)
    per_block = 12 * C * C + 13 * C
    H = cfg.n_head
    # score tables count as non-embedding: T5's (buckets, heads), CoPE's (layers, npos_max, head_dim)
    extra = {
        "t5": 32 * H,  # (buckets, heads) table
        "kerple": 2 * H,  # r1, r2 per head
        "fire": (32 + 32) + (32 * H + H) + 2,  # MLP 1 -> 32 -> H, c, L_thr
        "cope": L * 64 * (C // H),
    }.get(encoding, 0)
    embedding = V * C + (cfg.block_size * C if encoding == "learned" else 0)
    counts = tiny_model(encoding).param_counts()
    assert counts["embedding"] == embedding
    assert counts["non_embedding"] == L * per_block + 2 * C + extra
    assert counts["total"] == counts["embedding"] + counts["non_embedding"]


def test_flops_per_token_counts_the_tied_head_once():
    model = tiny_model("nope")
    cfg = model.cfg
    n = model.param_counts()["non_embedding"] + cfg.vocab_size * cfg.n_embd
    assert model.flops_per_token(32) == 6 * n + 12 * cfg.n_layer * cfg.n_embd * 32


def test_head_is_tied_to_token_embedding():
    model = tiny_model("rope")
    assert model.lm_head.weight is model.wte.weight


def test_untied_head_is_its_own_table_counted_with_the_embeddings():
    tied, untied = tiny_model("rope"), tiny_model("rope", tie_embeddings=False)
    V, C = untied.cfg.vocab_size, untied.cfg.n_embd
    assert untied.lm_head.weight is not untied.wte.weight
    t, u = tied.param_counts(), untied.param_counts()
    assert u["embedding"] == t["embedding"] + V * C and u["non_embedding"] == t["non_embedding"]
    assert u["total"] == t["total"] + V * C == sum(p.numel() for p in untied.parameters())
    assert untied.flops_per_token(32) == tied.flops_per_token(32)  # one V x C head matmul either way
    idx = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(0))
    untied(idx, idx)[1].backward()
    assert untied.wte.weight.grad[idx.unique()].abs().sum() > 0 and untied.lm_head.weight.grad.abs().sum() > 0
    # the head's gradient reaches every row (softmax over all ids); the table's only the ids in idx
    unused = torch.ones(V, dtype=torch.bool)
    unused[idx.unique()] = False
    assert untied.wte.weight.grad[unused].abs().sum() == 0 < untied.lm_head.weight.grad[unused].abs().sum()


def test_loss_ignores_minus_one_targets():
    model = tiny_model("alibi")
    idx = torch.randint(0, 101, (2, 10), generator=torch.Generator().manual_seed(0))
    targets = idx.clone()
    targets[:, :4] = -1
    logits, loss = model(idx, targets)
    want = F.cross_entropy(logits[:, 4:].reshape(-1, 101), idx[:, 4:].reshape(-1))
    torch.testing.assert_close(loss, want)


def test_sinusoidal_scales_token_embeddings_by_sqrt_width():
    cfg = tiny_config()
    scaled = GPT(cfg, SinusoidalPos()).pos.token_scale()
    assert scaled == pytest.approx(math.sqrt(cfg.n_embd))
    assert GPT(cfg, SinusoidalPos(scale_embeddings=False)).pos.token_scale() == 1.0


@pytest.mark.parametrize(
    "cfg,pos,message",
    [
        (dict(n_embd=66, n_head=4), LearnedPos(), "divisible by n_head"),
        (dict(n_layer=0), LearnedPos(), "n_layer must be >= 1"),
        (dict(dropout=1.0), LearnedPos(), "dropout"),
        (dict(), RopePos(rotary_dim=7), "rotary_dim"),
        (dict(), RopePos(rotary_dim=32), "rotary_dim"),
        (dict(n_embd=63, n_head=7), SinusoidalPos(), "even n_embd"),
        (dict(), T5Pos(num_buckets=32, max_distance=10), "max_distance"),
    ],
)
def test_impossible_shapes_are_clear_errors(cfg, pos, message):
    with pytest.raises(ValueError, match=message):
        GPT(tiny_config(**cfg), pos)


def test_state_dict_round_trips_strictly():
    a, b = tiny_model("t5", seed=0), tiny_model("t5", seed=1)
    b.load_state_dict(a.state_dict(), strict=True)
    idx = torch.randint(0, 101, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(a(idx)[0], b(idx)[0])
