"""The KV cache reproduces a full forward, for every encoding and every RoPE scaling."""

import pytest
import torch

from model import KVCache, PositionOutOfRange
from model.fixed_step import FixedDecodeStep
from model.generate import CachedDecoder
from tests.model_helpers import ENCODINGS, SCALINGS, tiny_model

CASES = [(e, "none") for e in ENCODINGS] + [("rope", s) for s in SCALINGS if s != "none"]


def decoder_logits(model, idx, prefill: int, fixed: bool = False) -> torch.Tensor:
    """CachedDecoder (what generation uses): prefill, then one step per token; (B, T - prefill + 1, V).
    `fixed`: the steps run the fixed-shape step (eager), as compiled generation does."""
    decoder = CachedDecoder(model, idx.shape[0], idx.shape[1])
    if fixed:
        decoder.fixed_step = FixedDecodeStep(model, decoder.cache)
    outs = [decoder.prefill(idx[:, :prefill])]
    outs += [decoder.step(idx[:, t]) for t in range(prefill, idx.shape[1])]
    return torch.stack(outs, dim=1)


def cached_logits(model, idx, prefill: int, chunk: int = 1) -> torch.Tensor:
    """Raw cache: prefill `prefill` tokens, then feed the rest `chunk` at a time; (B, T, V) logits."""
    cache = KVCache.for_model(model, idx.shape[0], idx.shape[1])
    outs = [model(idx[:, :prefill], cache=cache)[0]]
    for t in range(prefill, idx.shape[1], chunk):
        outs.append(model(idx[:, t : t + chunk], cache=cache)[0])
    assert cache.length == idx.shape[1]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("encoding,scaling", CASES)
def test_prefill_then_decode_equals_full_forward(encoding, scaling):
    # block_size 32, 48 tokens: RoPE scalings act past the training length (learned stays inside)
    model = tiny_model(encoding, scaling)
    n_tokens = min(48, model.max_positions or 48)
    idx = torch.randint(0, 101, (3, n_tokens), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for fixed in (False, True):
            stepped = decoder_logits(model, idx, prefill=20, fixed=fixed)  # logits after tokens 19 .. T-1
            if scaling == "dynamic":
                # dynamic NTK sets every position's frequencies from the current length, so a full
                # forward over n + m tokens is not causal; each step must equal the full forward
                # over exactly the tokens it has seen
                for i, t in enumerate(range(19, n_tokens)):
                    full_prefix = model(idx[:, : t + 1])[0][:, -1]
                    torch.testing.assert_close(stepped[:, i], full_prefix, atol=1e-4, rtol=0)
            else:
                full = model(idx)[0]
                diff = (stepped - full[:, 19:]).abs().max()
                assert diff <= 1e-4, f"{encoding}/{scaling} decoder (fixed step {fixed}): max abs diff {diff}"
        if scaling == "dynamic":
            return
        for chunk in (1, 5):
            diff = (cached_logits(model, idx, prefill=20, chunk=chunk) - full).abs().max()
            assert diff <= 1e-4, f"{encoding}/{scaling} chunk {chunk}: max abs diff {diff}"


def test_untied_head_decodes_the_full_forward_logits():
    model = tiny_model("alibi", tie_embeddings=False)
    idx = torch.randint(0, 101, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(idx)[0]
        assert (decoder_logits(model, idx, prefill=10) - full[:, 9:]).abs().max() <= 1e-4


def test_dynamic_scaling_is_active_past_training_length():
    """Guard for the test above: with dynamic NTK the prefix forward differs from no scaling."""
    idx = torch.randint(0, 101, (1, 48), generator=torch.Generator().manual_seed(2))
    dyn, plain = tiny_model("rope", "dynamic"), tiny_model("rope", "none")
    with torch.no_grad():
        # no change up to block_size, a change past it
        torch.testing.assert_close(dyn(idx[:, :32])[0], plain(idx[:, :32])[0], atol=1e-5, rtol=0)
        assert not torch.allclose(dyn(idx)[0][:, -1], plain(idx)[0][:, -1], atol=1e-3)


def test_only_dynamic_recomputes_and_only_past_training_length():
    assert tiny_model("rope", "dynamic").pos.recompute_on_growth(33)
    assert not tiny_model("rope", "dynamic").pos.recompute_on_growth(32)
    for encoding, scaling in CASES:
        if scaling != "dynamic":
            assert not tiny_model(encoding, scaling).pos.recompute_on_growth(10_000)


def test_raw_cache_past_dynamic_length_is_an_error_not_stale_keys():
    """A raw cached forward that grows a dynamic-NTK sequence past its original length would reuse
    keys and values computed under the old frequencies: it must refuse and name the way out, in the
    eager forward and in the fixed decode step alike."""
    model = tiny_model("rope", "dynamic")
    idx = torch.randint(0, 101, (1, 34), generator=torch.Generator().manual_seed(3))
    cache = KVCache.for_model(model, 1, 40)
    with torch.no_grad():
        model(idx[:, :32], cache=cache)  # up to the original length: fine
        with pytest.raises(ValueError, match="stale.*CachedDecoder"):
            model(idx[:, 32:33], cache=cache)
        with pytest.raises(ValueError, match="stale"):
            FixedDecodeStep(model, cache)(idx[:, 32:33])
        model(idx, cache=KVCache.for_model(model, 1, 40))  # a fresh cache (a re-prefill) is fine


def test_learned_table_overflow_is_a_clear_error():
    model = tiny_model("learned")
    cache = KVCache.for_model(model, 1, 40)
    with torch.no_grad():
        model(torch.zeros(1, 32, dtype=torch.long), cache=cache)
        with pytest.raises(PositionOutOfRange, match="learned position table"):
            model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
        with pytest.raises(PositionOutOfRange, match="32 positions"):
            model(torch.zeros(1, 33, dtype=torch.long))


def test_cache_overflow_is_a_clear_error():
    model = tiny_model("rope")
    cache = KVCache.for_model(model, 1, 8)
    with torch.no_grad(), pytest.raises(ValueError, match="KV cache full"):
        model(torch.zeros(1, 9, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_fixed_step_compiles_to_one_graph_for_every_position(encoding):
    """What CUDA graphs need: one full graph (no break) that serves every position, no recompile
    per length (dynamo with a counting backend; the CUDA test runs the real graphs)."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = tiny_model(encoding)
    idx = torch.randint(0, 101, (2, 30), generator=torch.Generator().manual_seed(3))
    decoder = CachedDecoder(model, 2, 30)
    decoder.fixed_step = FixedDecodeStep(model, decoder.cache)
    counter = CompileCounter()
    decoder.fixed_step.compile(backend=counter)
    decoder.prefill(idx[:, :10])
    stepped = torch.stack([decoder.step(idx[:, t]) for t in range(10, 30)], dim=1)
    assert counter.frame_count == 1
    with torch.no_grad():
        torch.testing.assert_close(stepped, model(idx)[0][:, 10:], atol=1e-4, rtol=0)
