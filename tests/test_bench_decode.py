"""Smoke test of bench/decode.py at a tiny shape: every contender decodes, and cached greedy
decoding gives the tokens of the uncached loop for every encoding."""

import pytest

from bench.decode import parse_args, run
from model.positional import encoding_names
from tests.conftest import requires_cuda

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--prompt-len", "3", "--new-tokens", "6"]


def test_decode_bench_runs_and_cached_equals_uncached(capsys):
    timings = run(parse_args(TINY + ["--reps", "2", "--warmup", "0", "--device", "cpu", "--check", "--hf-uncached"]))
    assert len(timings.wall) == len(encoding_names()) * 2 + 2
    assert all(len(ts) == 2 and min(ts) > 0 for ts in timings.wall.values())
    out = capsys.readouterr().out
    assert f"cached == uncached tokens: yes ({', '.join(encoding_names())})" in out
    assert "HF GPT2 generate (no cache)" in out


@pytest.mark.slow
def test_compiled_contender_gives_the_uncached_tokens(capsys):
    run(parse_args(TINY + ["--reps", "1", "--warmup", "1", "--device", "cpu", "--compile", "--check", "--no-hf",
                           "--encodings", "alibi"]))
    out = capsys.readouterr().out
    assert "ours compiled alibi" in out
    assert "cached == uncached tokens: yes (alibi)" in out


@pytest.mark.slow
@pytest.mark.cuda
@requires_cuda
def test_cuda_compiled_decode_gives_the_uncached_tokens(capsys):
    run(parse_args(TINY + ["--reps", "1", "--warmup", "1", "--device", "cuda", "--compile", "--check", "--no-hf"]))
    assert f"cached == uncached tokens: yes ({', '.join(encoding_names())})" in capsys.readouterr().out
