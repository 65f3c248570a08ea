"""Every attention backend equals softmax(Q K^T / sqrt(d) + bias + causal mask) V."""

import math

import pytest
import torch

from model.attention import AttentionInputs, flex_attend, sdpa_attend
from model.config import AttnBackend
from model.positional import Positions
from tests.conftest import requires_cuda
from tests.model_helpers import tiny_model


def reference_attention(q, k, v, q_pos, k_pos, bias=None):
    """Plain math over (B, H, Tq, D) / (B, H, Tk, D), positions given explicitly."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias
    scores = scores.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def qkv(B=2, H=4, Tq=24, Tk=24, D=16, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, **kw) for T in (Tq, Tk, Tk)]


@pytest.mark.parametrize("encoding", ["nope", "alibi", "t5", "fire", "kerple"])
@pytest.mark.parametrize("start,length", [(0, 24), (16, 8), (23, 1)])
def test_sdpa_paths_match_reference(encoding, start, length):
    """is_causal (no cache), no mask (one-token decode), float mask (bias or cached chunk)."""
    pos_module = tiny_model(encoding).pos
    positions = Positions.make(start, length, "cpu")
    inp = AttentionInputs(pos_module, positions, flex=False)
    q, k, v = qkv(Tq=length, Tk=start + length)
    with torch.no_grad():
        got = sdpa_attend(q, k, v, inp, dropout_p=0.0)
        want = reference_attention(q, k, v, positions.q, positions.k, pos_module.bias(positions))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding", ["alibi", "t5"])
def test_flex_score_mod_forward_matches_reference_on_cpu(encoding):
    """FlexAttention has no CPU backward, but its forward runs: check each score_mod there."""
    pos_module = tiny_model(encoding).pos
    positions = Positions.make(0, 40, "cpu")
    q, k, v = qkv(Tq=40, Tk=40)
    with torch.no_grad():
        got, _ = flex_attend(q, k, v, pos_module.score_mod(positions))
        want = reference_attention(q, k, v, positions.q, positions.k, pos_module.bias(positions))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding", ["alibi", "t5"])
def test_model_with_flex_backend_equals_sdpa_backend(encoding):
    model = tiny_model(encoding)
    idx = torch.randint(0, 101, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        sdpa = model(idx)[0]
        model.cfg.attn_backend = AttnBackend.flex
        flex = model(idx)[0]
    torch.testing.assert_close(flex, sdpa, atol=1e-4, rtol=1e-4)


def test_flex_on_cpu_with_gradients_is_a_clear_error():
    model = tiny_model("alibi", attn_backend=AttnBackend.flex)
    with pytest.raises(ValueError, match="no backward on CPU"):
        model(torch.zeros(1, 8, dtype=torch.long))


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("encoding", ["alibi", "t5"])
def test_flex_equals_float_mask_values_and_gradients_on_cuda(encoding):
    torch.manual_seed(0)
    grads = {}
    for backend in (AttnBackend.sdpa, AttnBackend.flex):
        model = tiny_model(encoding, attn_backend=backend, block_size=256).cuda().train()
        idx = torch.randint(0, 101, (2, 256), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
        logits, loss = model(idx, idx)
        loss.backward()
        grads[backend] = (logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    (ls, gs), (lf, gf) = grads[AttnBackend.sdpa], grads[AttnBackend.flex]
    torch.testing.assert_close(lf, ls, atol=1e-3, rtol=1e-3)
    for name in gs:  # includes pos.relative_attention_bias.weight, the T5 table
        torch.testing.assert_close(gf[name], gs[name], atol=1e-3, rtol=1e-2, msg=name)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("encoding", ["alibi", "t5"])
def test_compiled_flex_training_step_equals_eager_sdpa_on_cuda(encoding):
    """What train=gpu runs: the whole model under torch.compile with FlexAttention (and, for T5,
    the band gradient of its table inside the compiled backward) against eager SDPA."""
    torch._dynamo.reset()
    idx = torch.randint(0, 101, (2, 256), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    grads = {}
    for backend in (AttnBackend.sdpa, AttnBackend.flex):
        model = tiny_model(encoding, attn_backend=backend, block_size=256).cuda().train()
        run = torch.compile(model) if backend == AttnBackend.flex else model
        logits, loss = run(idx, idx)
        loss.backward()
        grads[backend] = (logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    (ls, gs), (lf, gf) = grads[AttnBackend.sdpa], grads[AttnBackend.flex]
    torch.testing.assert_close(lf, ls, atol=1e-3, rtol=1e-3)
    for name in gs:
        torch.testing.assert_close(gf[name], gs[name], atol=1e-3, rtol=1e-2, msg=name)
