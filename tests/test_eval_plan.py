"""The evaluation's bounds: the head scored in chunks of positions (equal to the unchunked path,
memory bounded by eval.batch_tokens at any length), the plan printed with a time estimate, plans
above eval.max_forward_tokens refused, bad options refused before any checkpoint is read."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from evaluation.config import EvalConfig, EvalSetConfig
from evaluation.extrapolation import evaluate_model
from evaluation.perplexity import WindowScorer
from evaluation.windows import nonoverlap_windows, plan_chunks, sliding_windows
from tests.conftest import ROOT
from tests.model_helpers import tiny_model
from tests.test_evaluate import CPU, SMALL, random_text


@pytest.mark.parametrize("encoding", ["rope", "alibi"])
@pytest.mark.parametrize("protocol", ["nonoverlap", "sliding"])
def test_chunked_head_equals_the_unchunked_path(encoding, protocol):
    """batch_tokens below one window: one window per batch, its head in 8-position chunks; against
    the same windows scored with the whole head at once."""
    model = tiny_model(encoding, block_size=16, **SMALL)
    text = random_text([200, 150])
    chunks = plan_chunks(text.docs, 64, None)
    windows = nonoverlap_windows(chunks, 64) if protocol == "nonoverlap" else sliding_windows(chunks, 64, 24)
    whole = WindowScorer(model, CPU, batch_tokens=1 << 20).score(text.tokens, windows, per_position=True)
    chunked = WindowScorer(model, CPU, batch_tokens=8).score(text.tokens, windows, per_position=True)
    assert chunked.count == whole.count > 0
    assert chunked.loss_sum == pytest.approx(whole.loss_sum, rel=1e-12)
    np.testing.assert_allclose(chunked.position_sum, whole.position_sum, rtol=1e-12)


def test_the_head_never_sees_more_than_batch_tokens_positions():
    """A window 8x longer than batch_tokens: every lm_head call (the logits) and every hidden-state
    batch stays within batch_tokens positions."""
    model = tiny_model("nope", block_size=16, **SMALL)
    calls = []
    model.lm_head.register_forward_hook(lambda m, inp, out: calls.append(out.shape[0] * out.shape[1]))
    text = random_text([600])
    windows = nonoverlap_windows(plan_chunks(text.docs, 512, None), 512)
    WindowScorer(model, CPU, batch_tokens=64).score(text.tokens, windows)
    assert len(calls) == 512 // 64 and max(calls) == 64


# Peak RSS while scoring one window of L = 8192 tokens with a 8192-token vocabulary: unchunked, the
# logits alone are 8192 x 8192 floats (256 MiB), and the cross-entropy's log-softmax as much again.
PEAK = """
import re, sys, numpy as np, torch
from evaluation.perplexity import WindowScorer
from evaluation.windows import nonoverlap_windows, plan_chunks
from tests.model_helpers import tiny_model
torch.set_num_threads(1)
L = 8192
model = tiny_model("rope", block_size=64, n_layer=1, n_embd=32, vocab_size=8192)
tokens = np.random.default_rng(0).integers(0, 8192, L + 1).astype(np.uint16)
windows = nonoverlap_windows(plan_chunks([(0, L + 1)], L, None), L)
scorer = WindowScorer(model, torch.device("cpu"), batch_tokens=int(sys.argv[1]))
scorer.score(tokens[:65], nonoverlap_windows(plan_chunks([(0, 65)], 64, None), 64))  # warm up
def status(key):  # kB, from /proc/self/status
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current resident size
before = status("VmRSS")
scorer.score(tokens, windows)
print((status("VmHWM") - before) // 1024)  # MiB
"""


def peak_growth_mib(batch_tokens: int) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, str(batch_tokens)], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    return int(out.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_peak_memory_of_a_long_window_is_bounded_by_batch_tokens():
    chunked = peak_growth_mib(512)  # logits of 512 positions: 16 MiB
    unchunked = peak_growth_mib(1 << 20)  # the whole window's head at once (what the old code did)
    assert chunked < 160, chunked  # measured 38-102 MiB (VmHWM, busy machine)
    assert unchunked > 256, unchunked  # the bound is not met by accident


def small_eval(**overrides) -> EvalConfig:
    fields = dict(multipliers=[1, 2], stride=4, variants=["none", "yarn"], batch_tokens=256,
                  progress=False, sets={"t": EvalSetConfig(files=["x"], max_tokens=64)})
    return EvalConfig(**(fields | overrides))


def test_plan_is_printed_with_a_time_estimate():
    model = tiny_model("rope", block_size=16, **SMALL)
    lines = []
    result = evaluate_model(model, small_eval(), {"t": random_text([300])}, CPU, log=lines.append)
    text = "\n".join(lines)
    assert "tokens forwarded" in text and "length     32  sliding" in text
    assert "estimated time: about" in text and "from a warm-up of" in text
    total = sum(r["forwarded_tokens"] for r in result["sets"]["t"]["rows"] if r["variant"] != "yarn" or r["length"] > 16)
    assert f"{total:,} tokens forwarded" in text


def test_a_plan_above_the_cap_is_refused_before_any_work():
    model = tiny_model("rope", block_size=16, **SMALL)
    calls = []
    model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"would forward [\d,]+ tokens, above eval.max_forward_tokens=1,000: .*"
                                         r"pass eval.max_forward_tokens=\d+ to run it anyway"):
        evaluate_model(model, small_eval(max_forward_tokens=1000), {"t": random_text([300])}, CPU, log=lambda s: None)
    assert not calls


@pytest.mark.parametrize("overrides,message", [
    ({"multipliers": []}, r"eval.multipliers=\[\]: give one or more positive numbers"),
    ({"multipliers": [1, 0]}, r"eval.multipliers=\[1, 0\]: give one or more positive numbers"),
    ({"multipliers": [-2]}, r"eval.multipliers=\[-2\]"),
    ({"stride": 0}, "eval.stride=0: must be >= 1"),
    ({"batch_tokens": 0}, "eval.batch_tokens=0: must be >= 1"),
    ({"max_forward_tokens": 0}, "eval.max_forward_tokens=0: must be >= 1"),
    ({"protocols": []}, "eval.protocols is empty"),
])
def test_bad_eval_options_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_eval(**overrides)
