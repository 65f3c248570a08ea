"""Sampling rules and cached generation against an uncached reference loop."""

import pytest
import torch

from model.fixed_step import _COMPILED
from model.generate import CachedDecoder, ContextFull, generate, sample_next
from tests.conftest import requires_cuda
from tests.model_helpers import ENCODINGS, tiny_model


def uncached_greedy(model, idx, n):
    """Reference: a full forward over everything at every step, argmax of the last logits."""
    for _ in range(n):
        nxt = model(idx)[0][:, -1].argmax(-1, keepdim=True)
        idx = torch.cat((idx, nxt), dim=1)
    return idx


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_greedy_cached_generation_equals_uncached(encoding):
    model = tiny_model(encoding)
    prompt = torch.randint(0, 101, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = uncached_greedy(model, prompt, 20)[:, 7:]
    got = torch.stack(list(generate(model, prompt, 20, temperature=0.0)), dim=1)
    assert torch.equal(got, want)


def test_top_k_1_is_greedy_and_seed_reproduces():
    model = tiny_model("rope")
    prompt = torch.zeros(1, 3, dtype=torch.long)

    def run(**kw):
        return torch.cat(list(generate(model, prompt, 15, **kw)))

    assert torch.equal(run(temperature=1.0, top_k=1), run(temperature=0.0))
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(run(temperature=1.0, generator=g()), run(temperature=1.0, generator=g()))


def test_top_k_and_top_p_keep_only_the_allowed_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    g = torch.Generator().manual_seed(0)
    draws = lambda **kw: {int(sample_next(logits, 1.0, generator=g, **kw)) for _ in range(300)}  # noqa: E731
    assert draws(top_k=2, top_p=None) == {0, 1}
    # nucleus: 0.5 + 0.3 covers 0.75, so tokens 0 and 1 only; 0.85 also needs token 2
    assert draws(top_k=None, top_p=0.75) == {0, 1}
    assert draws(top_k=None, top_p=0.85) == {0, 1, 2}
    assert draws(top_k=None, top_p=None) == {0, 1, 2, 3, 4}


def test_stops_at_stop_token():
    model = tiny_model("alibi")
    prompt = torch.zeros(1, 4, dtype=torch.long)
    with torch.no_grad():
        first = int(model(prompt)[0][0, -1].argmax())
    tokens = list(generate(model, prompt, 50, temperature=0.0, stop_token=first))
    assert len(tokens) == 1 and int(tokens[0]) == first


def test_learned_table_stop_and_slide():
    model = tiny_model("learned")  # block_size 32
    prompt = torch.randint(0, 101, (1, 30), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="learned position table holds 32"):
        generate(model, torch.zeros(1, 40, dtype=torch.long), 5)
    stream = generate(model, prompt, 10, temperature=0.0, overflow="stop")
    assert len([next(stream) for _ in range(3)]) == 3  # positions 30, 31 fill the table
    with pytest.raises(ContextFull, match="overflow=slide"):
        next(stream)
    slid = torch.stack(list(generate(model, prompt, 10, temperature=0.0, overflow="slide")), dim=1)
    # reference: greedy over a window of the last 32 tokens, full forward every step
    idx = prompt
    with torch.no_grad():
        for _ in range(10):
            nxt = model(idx[:, -32:])[0][:, -1].argmax(-1, keepdim=True)
            idx = torch.cat((idx, nxt), dim=1)
    assert torch.equal(slid, idx[:, 30:])


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(top_k=0), dict(top_p=1.5), dict(overflow="wrap")])
def test_bad_sampling_options_are_clear_errors(bad):
    with pytest.raises(ValueError):
        generate(tiny_model("nope"), torch.zeros(1, 2, dtype=torch.long), 3, **bad)


@pytest.mark.slow
def test_compiled_generation_equals_eager_and_reuses_its_graph():
    """generate(compile=True): the compiled fixed-shape step (inductor on CPU) gives the eager
    tokens, and a second call replays the kept step instead of compiling again."""
    model = tiny_model("t5")
    prompt = torch.randint(0, 101, (2, 7), generator=torch.Generator().manual_seed(0))
    want = torch.stack(list(generate(model, prompt, 20, temperature=0.0)), dim=1)
    for _ in range(2):
        got = torch.stack(list(generate(model, prompt, 20, temperature=0.0, compile=True)), dim=1)
        assert torch.equal(got, want)
    assert len(_COMPILED[model]) == 1


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_cuda_graph_decode_steps_equal_full_forward(encoding):
    """On CUDA, compile=True captures the step as CUDA graphs (mode reduce-overhead); its logits
    equal a full forward's, on a first and on a second (replayed) generation. Inductor skips CUDA
    graphs, with only a warning, for a graph holding CPU work or too many recompiles: none here."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # a fresh recompile budget: earlier tests compiled this code too
    counters.clear()
    model = tiny_model(encoding).cuda()
    idx = torch.randint(0, 101, (2, 30), generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        full = model(idx)[0][:, 9:]
    for _ in range(2):
        decoder = CachedDecoder(model, 2, 30, compile=True)
        outs = [decoder.prefill(idx[:, :10])] + [decoder.step(idx[:, t]) for t in range(10, 30)]
        torch.testing.assert_close(torch.stack(outs, dim=1), full, atol=1e-4, rtol=0)
    assert counters["inductor"]["cudagraph_skips"] == 0
