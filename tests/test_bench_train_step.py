"""Smoke test of bench/train_step.py: every contender trains a step at a tiny shape, and each
peer really has our shape (same parameter count up to the parts its block lacks or adds)."""

import functools

import pytest
import torch

from bench.common import peak_flops
from bench.train_step import XT_ENCODINGS, Shape, build_contenders, parse_args, run
from model.positional import encoding_names
from tests.conftest import requires_cuda

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "2"]


@pytest.mark.slow
def test_every_contender_runs_and_is_reported(capsys):
    timings = run(parse_args(TINY + ["--reps", "2", "--warmup", "1", "--device", "cpu"]))
    names = set(timings.wall)
    encodings = encoding_names()
    assert {f"ours {e}" for e in encodings} <= names
    assert {"HF GPT2 (learned)", "HF GPT-NeoX (rope)", "HF Bloom (alibi)"} <= names
    assert sum(n.startswith("x-transformers") for n in names) == len(set(XT_ENCODINGS) & set(encodings))
    assert all(len(ts) == 2 and min(ts) > 0 for ts in timings.wall.values())
    out = capsys.readouterr().out
    assert "peer/ours" in out and out.count("| ours ") == len(encodings)


def test_peers_share_the_shape():
    shape = Shape(n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=1)
    for c in build_contenders(shape, ["learned", "rope", "alibi", "t5", "xpos", "cope"]):
        emb = [m for m in c.model.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == 50257]
        assert len(emb) == 1 and emb[0].embedding_dim == 32, c.name  # one tied 50257 x C table
        idx = torch.zeros(1, 16, dtype=torch.long)
        loss = c.loss(c.model, idx, idx)
        assert loss.ndim == 0 and torch.isfinite(loss), c.name
        # the head is tied: no second vocab-sized matrix
        assert sum(p.numel() for p in c.model.parameters() if 50257 in p.shape) == 50257 * 32, c.name


@pytest.mark.slow
def test_every_compiled_contender_is_compiled(monkeypatch):
    """All contenders compile through one function, one closure each: past dynamo's default of 8
    versions of a function the rest would silently run eager (7 of 15 did)."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counter))
    run(parse_args(TINY + ["--reps", "1", "--warmup", "1", "--device", "cpu", "--compile"]))
    assert counter.frame_count >= 15


@pytest.mark.slow
@pytest.mark.cuda
@requires_cuda
def test_cuda_bf16_compiled_step_reports_mfu(capsys):
    args = ["--reps", "2", "--warmup", "1", "--device", "cuda", "--dtype", "bfloat16", "--compile"]
    run(parse_args(TINY + args + ["--encodings", "learned", "alibi"]))
    if peak_flops(torch.device("cuda"), torch.bfloat16) is not None:  # a GPU whose peak we know
        assert "MFU" in capsys.readouterr().out


def test_profile_step_splits_every_contender_by_operator_class(capsys):
    from bench.profile_step import CLASSES, parse_args as profile_args, run as profile_run

    rows = profile_run(profile_args(TINY + ["--steps", "1", "--warmup", "1", "--encodings", "learned", "alibi"]))
    assert [r[0] for r in rows] == ["ours learned", "HF GPT2 (learned)", "x-transformers absolute",
                                    "ours alibi", "HF Bloom (alibi)", "x-transformers ALiBi"]
    for row in rows:
        total, parts = float(row[1]), [float(x) for x in row[2 : 3 + len(CLASSES)]]
        assert total > 0 and float(row[2]) > 0  # every model spends time in matmuls
        assert abs(sum(parts) - total) <= 0.01 * total + len(parts)  # the classes add up (rounded)
    assert "softmax + CE" in capsys.readouterr().out


def test_vocab_size_reaches_every_contender_and_cpu_mfu_is_reported(capsys):
    shape = Shape(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=1, vocab_size=97)
    for c in build_contenders(shape, ["learned", "rope"]):
        emb = [m for m in c.model.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == 97]
        assert len(emb) == 1, c.name
    run(parse_args(TINY + ["--vocab-size", "97", "--reps", "1", "--warmup", "0", "--device", "cpu",
                           "--encodings", "learned"]))
    out = capsys.readouterr().out
    assert "vocab 97" in out and "| MFU |" in out and "fp32 matmul peak of this machine, measured now" in out


def test_matmul_peak_counts_two_n_cubed_flops(monkeypatch):
    import bench.common as common

    ticks = iter(range(100))  # every perf_counter call advances one second: each product "takes" 1 s
    monkeypatch.setattr(common.time, "process_time", lambda: float(next(ticks)))
    assert common.matmul_peak(torch.device("cpu"), "cpu", reps=3, n=8) == 2 * 8**3
