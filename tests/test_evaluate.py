"""Length-extrapolation evaluation: both protocols against by-hand cross-entropy, the same tokens
scored exactly once at every length, RoPE variants, the learned table's limit, eval text loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data.encode import get_tokenizer
from data.vocab import Vocab
from evaluation.config import DocumentMode, EvalConfig, EvalSetConfig, Protocol
from evaluation.extrapolation import evaluate_model
from evaluation.perplexity import WindowScorer
from evaluation.text import EvalText, load_eval_text, split_documents
from evaluation.windows import chunk_size, nonoverlap_windows, plan_chunks, sliding_windows
from model import GPT
from model.config import ModelConfig
from model.positional.rope_scaling import RopeScalingKind
from tests.model_helpers import tiny_model

VOCAB = 101
CPU = torch.device("cpu")
SMALL = dict(n_layer=1, n_embd=32, vocab_size=VOCAB)  # tiny_model's other sizes, one layer: fast


def random_text(sizes: list[int], seed: int = 0) -> EvalText:
    """Documents of the given lengths, back to back, as an EvalText."""
    tokens = np.random.default_rng(seed).integers(0, VOCAB, sum(sizes)).astype(np.uint16)
    ends = np.cumsum(sizes)
    docs = [(int(e - s), int(e)) for s, e in zip(sizes, ends)]
    return EvalText(name="t", tokens=tokens, docs=docs, files=[])


def hand_windows_ce(model: GPT, tokens: np.ndarray, starts, length: int, score: slice) -> tuple[float, int]:
    """(sum of cross-entropies, count) over positions `score` of windows at `starts`, one window
    per plain forward over the full logits."""
    total, count = 0.0, 0
    with torch.no_grad():
        for s in starts:
            buf = torch.from_numpy(tokens[s : s + length + 1].astype(np.int64))
            logits, _ = model(buf[None, :-1])
            ce = F.cross_entropy(logits[0, score], buf[1:][score], reduction="sum")
            total += ce.item()
            count += len(range(length)[score])
    return total, count


@pytest.mark.parametrize("encoding", ["learned", "rope", "alibi", "t5"])
def test_nonoverlap_ppl_is_exp_mean_ce_by_hand(encoding):
    model = tiny_model(encoding, block_size=16, **SMALL)
    text = random_text([120, 40, 90])
    chunks = plan_chunks(text.docs, 32, None)
    scorer = WindowScorer(model, CPU, batch_tokens=40)  # 2 windows per batch: several batches
    scores = scorer.score(text.tokens, nonoverlap_windows(chunks, 16))
    # By hand: back-to-back windows of 16 from each chunk's first target - 1, every target scored.
    starts = [f - 1 + 16 * i for f in chunks.first for i in range(2)]
    total, count = hand_windows_ce(model, text.tokens, starts, 16, slice(0, 16))
    assert scores.count == count == len(chunks.first) * 32
    assert scores.ppl == pytest.approx(math.exp(total / count), rel=1e-5)


@pytest.mark.parametrize("encoding", ["rope", "alibi", "nope"])
def test_sliding_stride_1_scores_each_token_with_a_full_window(encoding):
    model = tiny_model(encoding, block_size=8, **SMALL)
    text = random_text([20, 40])
    chunks = plan_chunks(text.docs, 16, None)
    scores = WindowScorer(model, CPU, batch_tokens=64).score(text.tokens, sliding_windows(chunks, 8, 1))
    total, count = 0.0, 0
    for doc_start, first in zip(chunks.doc_start, chunks.first):
        for t in range(first, first + 16):  # target t from the 8 tokens before it (fewer at a doc's start)
            start = max(doc_start, t - 8)
            last = t - start - 1  # the window position that predicts t
            s, c = hand_windows_ce(model, text.tokens, [start], 8, slice(last, last + 1))
            total, count = total + s, count + c
    assert scores.count == count
    assert scores.loss == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("encoding", ["learned", "rope", "t5"])
def test_sliding_with_stride_equal_to_window_is_nonoverlap(encoding):
    model = tiny_model(encoding, block_size=16, **SMALL)
    text = random_text([100, 40])
    chunks = plan_chunks(text.docs, 32, None)
    scorer = WindowScorer(model, CPU, batch_tokens=64)
    for length in (8, 16):
        a = nonoverlap_windows(chunks, length)
        b = sliding_windows(chunks, length, length)
        assert sorted(a.starts.tolist()) == sorted(b.starts.tolist())
        assert scorer.score(text.tokens, b).loss == pytest.approx(scorer.score(text.tokens, a).loss, rel=1e-6)


@pytest.mark.parametrize("stride", [1, 3, 7, 16, 100])
def test_every_scored_token_is_scored_once_at_every_length(stride):
    docs = random_text([5, 97, 64, 65, 300, 33]).docs
    lengths = [4, 8, 16]
    chunks = plan_chunks(docs, chunk_size(lengths), None)
    expected = np.sort(np.concatenate([np.arange(f, f + chunks.size) for f in chunks.first]))
    assert len(expected) == chunks.scored_tokens == 16 * sum((e - s - 1) // 16 for s, e in docs)
    doc_of = np.concatenate([np.full(e - s, i) for i, (s, e) in enumerate(docs)])
    for length in lengths:
        for windows in (nonoverlap_windows(chunks, length), sliding_windows(chunks, length, stride)):
            scored = windows.scored_positions()
            assert np.array_equal(np.sort(scored), expected)  # each chosen target once, nothing else
            assert len(np.unique(scored)) == len(scored)
            # a window's tokens (inputs and targets) never leave its document
            first_doc = doc_of[windows.starts]
            assert np.array_equal(first_doc, doc_of[windows.starts + length])
            assert np.all((windows.score_from >= 0) & (windows.score_to <= length))


def test_max_tokens_spreads_whole_chunks_over_the_set():
    docs = random_text([1000, 1000, 1000]).docs
    chunks = plan_chunks(docs, 100, max_tokens=450)
    assert chunks.available == 3 * 9 and len(chunks.first) == 4
    assert len(set(chunks.doc_start.tolist())) == 3  # not just the first document's chunks


def tiny_eval_cfg(**overrides) -> EvalConfig:
    fields = dict(multipliers=[1, 2], stride=4, batch_tokens=512, progress=False,
                  sets={"t": EvalSetConfig(documents=DocumentMode.eot, max_tokens=None)})
    fields.update(overrides)
    return EvalConfig(**fields)


def rows_of(result: dict) -> dict:
    return {(r["variant"], r["length"], r["protocol"]): r for r in result["sets"]["t"]["rows"]}


def test_learned_past_its_table_is_na_and_position_loss_stops_there():
    model = tiny_model("learned", block_size=8, **SMALL)
    result = evaluate_model(model, tiny_eval_cfg(), {"t": random_text([60, 40])}, CPU, log=lambda s: None)
    rows = rows_of(result)
    assert result["variants"] == ["none", "logn"]  # the trained model and log-length scaling
    for variant in ("none", "logn"):
        assert rows[(variant, 16, "nonoverlap")]["ppl"] is None
        assert rows[(variant, 16, "sliding")]["note"] == "n/a (table length 8)"
    assert rows[("none", 8, "nonoverlap")]["ppl"] > 1
    assert rows[("logn", 8, "nonoverlap")]["ppl"] == rows[("none", 8, "nonoverlap")]["ppl"]  # scored once
    assert [c["length"] for c in result["sets"]["t"]["position_loss"]] == [8, 8]
    assert all(len(c["loss"]) == 8 for c in result["sets"]["t"]["position_loss"])


def test_rope_variants_share_factor_1_and_differ_past_it():
    model = tiny_model("rope", block_size=8, **SMALL)
    kinds = [k.value for k in RopeScalingKind] + ["logn"]
    result = evaluate_model(model, tiny_eval_cfg(), {"t": random_text([60, 40])}, CPU, log=lambda s: None)
    rows = rows_of(result)
    for protocol in ("nonoverlap", "sliding"):
        at_l = {rows[(k, 8, protocol)]["ppl"] for k in kinds}
        assert len(at_l) == 1  # factor 1: every variant is the unscaled model
        past = [rows[(k, 16, protocol)]["ppl"] for k in kinds]
        assert len(set(past)) == len(kinds)  # factor 2: each variant changes the numbers
    assert len(result["sets"]["t"]["position_loss"]) == len(kinds)
    assert model.pos.scaling.kind == RopeScalingKind.none  # the checkpoint's own scaling is back
    assert model.log_length is None
    assert result["variant_notes"]["yarn"].startswith("YaRN, dims ramp")


def test_each_length_scores_the_same_tokens_in_the_result():
    model = tiny_model("alibi", block_size=8, **SMALL)
    cfg = tiny_eval_cfg(multipliers=[1, 2, 4], protocols=[Protocol.nonoverlap, Protocol.sliding])
    result = evaluate_model(model, cfg, {"t": random_text([100, 70])}, CPU, log=lambda s: None)
    counts = {r["scored_tokens"] for r in result["sets"]["t"]["rows"]}
    assert counts == {result["sets"]["t"]["scored_tokens"]} == {32 * (3 + 2)}


def test_eval_text_tokenizes_like_training_and_splits_books(tmp_path):
    books = {"a.txt": "Title A\n\nOnce upon a time there was a cat.\n", "b.txt": "Title B\n\nThe end came.\n"}
    for name, text in books.items():
        (tmp_path / name).write_text(text)
    cfg = EvalSetConfig(files=[str(tmp_path / "*.txt")], documents=DocumentMode.eot)
    enc = get_tokenizer("gpt2")
    text = load_eval_text("books", cfg, Vocab("gpt2", enc.n_vocab, enc.eot_token), str(tmp_path / "cache"))
    expected = [enc.encode_ordinary(t.strip()) + [enc.eot_token] for t in books.values()]
    assert [text.tokens[a:b].tolist() for a, b in text.docs] == expected
    stream = split_documents(text.tokens, DocumentMode.stream, enc.eot_token)
    assert stream == [(0, len(text.tokens))]


def test_bad_options_are_clear_errors():
    model = tiny_model("nope", block_size=8, **SMALL)
    text = {"t": random_text([100])}
    with pytest.raises(ValueError, match="max_tokens=8 is less than one chunk"):
        evaluate_model(model, tiny_eval_cfg(sets={"t": EvalSetConfig(max_tokens=8)}), text, CPU)
    with pytest.raises(ValueError, match="no document holds 64"):
        evaluate_model(model, tiny_eval_cfg(multipliers=[1, 8]), {"t": random_text([40, 40])}, CPU)
    with pytest.raises(ValueError, match="eval.stride"):
        evaluate_model(model, tiny_eval_cfg(stride=0), text, CPU)


def test_scorer_does_not_change_training_mode_or_grads():
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=VOCAB), tiny_model("rope").pos_cfg)
    model.train()
    text = random_text([50])
    WindowScorer(model, CPU).score(text.tokens, sliding_windows(plan_chunks(text.docs, 16, None), 8, 2))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_evaluate_cli_writes_eval_json(tmp_path):
    """evaluate.py end to end through Hydra: a saved checkpoint, two small text files, eval.json."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from omegaconf import OmegaConf

    from model.positional.rope import RotaryPositions

    RopePos = RotaryPositions.Config
    from training.checkpoint import save_checkpoint

    root = Path(__file__).resolve().parents[1]
    torch.manual_seed(0)
    model_cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=50257)
    model = GPT(model_cfg, RopePos())
    config = {"model": OmegaConf.to_container(OmegaConf.structured(model_cfg), enum_to_str=True),
              "pos": OmegaConf.to_container(OmegaConf.structured(RopePos()), enum_to_str=True),
              "data": {"tokenizer": "gpt2"}}
    run = tmp_path / "run"
    save_checkpoint({"model": model.state_dict(), "config": config}, run / "ckpt_best.pt")
    for name in ("a", "b"):
        (tmp_path / f"{name}.txt").write_text(" ".join(["Once upon a time there was a little dog."] * 30))
    cmd = [sys.executable, "evaluate.py", f"ckpts=[{run}]", "eval.multipliers=[1,2]", "eval.stride=8",
           "eval.variants=[none,yarn]", "eval.progress=false", f"eval.cache_dir={tmp_path}/cache",
           "~eval.sets.tinystories", "~eval.sets.long_stories",  # replace the default sets by one
           f"+eval.sets.books={{files:[{tmp_path}/*.txt],documents:eot,max_tokens:64}}",
           "eval.repeat.span=4", "eval.repeat.spans=2", "eval.repeat.distances=[0.5,2]", "eval.retrieval.fillers=1",
           "eval.retrieval.lengths=[1,2]", "eval.retrieval.depths=[0.5]"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "64 tokens scored at every length" in done.stdout
    result = json.loads((run / "eval.json").read_text())
    rows = result["sets"]["books"]["rows"]
    assert {(r["variant"], r["length"], r["protocol"]) for r in rows} == {
        (v, L, p) for v in ("none", "yarn") for L in (16, 32) for p in ("nonoverlap", "sliding")}
    assert result["sets"]["books"]["num_documents"] == 2
    probes = result["probes"]
    assert [v["variant"] for v in probes["repeat"]["sets"]["books"]["variants"]] == ["none", "yarn"]
    assert [r["distance"] for r in probes["repeat"]["sets"]["books"]["variants"][0]["rows"]] == [8, 32]
    assert probes["retrieval"]["lengths"] == [16, 32] and probes["attention"]["lengths"] == [16, 32]


def test_eval_variants_filters_each_model_and_falls_back_to_the_trained_model():
    text = {"t": random_text([60, 40])}
    alibi, rope = tiny_model("alibi", block_size=8, **SMALL), tiny_model("rope", block_size=8, **SMALL)
    for model, chosen, expected in [
        (alibi, ["yarn"], {"none"}),  # offers none of them: scored as trained
        (alibi, ["none", "logn"], {"none", "logn"}),
        (rope, ["none", "logn"], {"none", "logn"}),
        (rope, ["yarn", "logn"], {"yarn", "logn"}),
    ]:
        result = evaluate_model(model, tiny_eval_cfg(variants=chosen), text, CPU, log=lambda s: None)
        assert {r["variant"] for r in result["sets"]["t"]["rows"]} == expected, (model.pos_cfg.name, chosen)
    with pytest.raises(ValueError, match="not a variant of any encoding"):
        tiny_eval_cfg(variants=["bogus"])


def test_logn_rows_differ_past_L_for_an_encoding_without_variants():
    model = tiny_model("nope", block_size=8, **SMALL)
    rows = rows_of(evaluate_model(model, tiny_eval_cfg(), {"t": random_text([60, 40])}, CPU, log=lambda s: None))
    for protocol in ("nonoverlap", "sliding"):
        assert rows[("logn", 8, protocol)]["ppl"] == rows[("none", 8, protocol)]["ppl"]
        assert rows[("logn", 16, protocol)]["ppl"] != rows[("none", 16, protocol)]["ppl"]
