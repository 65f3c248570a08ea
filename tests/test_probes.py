"""Context probes: the inputs as specified, a copy model of known reach giving the expected usable
context and retrieval, attention statistics against plain math, the report section."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from data.encode import get_tokenizer
from data.vocab import Vocab
from evaluation.config import EvalConfig, EvalSetConfig
from evaluation.probes.attention import AttentionStats, attention_stats
from evaluation.probes.config import RetrievalProbeConfig
from evaluation.probes.forward import Forward
from evaluation.probes.repeat import RepeatInputs, distances_of, plan_spans, repeat_rows, usable_context
from evaluation.probes.retrieval import build_inputs, retrieval_rows
from evaluation.probes.run import run_probes
from evaluation.report import write_report
from evaluation.runs import EVAL_FILE, load_run
from evaluation.text import EvalText
from model.attention import record_attention
from model.positional import Positions
from tests.model_helpers import ENCODINGS, tiny_model

CPU = torch.device("cpu")


class CopyModel(nn.Module):
    """A hand-made 'induction head' with a known reach: position i looks back at most `window`
    tokens for the latest earlier copy of its own token and predicts the token that followed it
    (logit `confidence` on it, 0 on the rest); without a copy in reach every token is equally
    likely. `hidden` returns the predicted id per position, `lm_head` turns it into logits."""

    def __init__(self, window: int, vocab: int, block_size: int, confidence: float = 10.0):
        super().__init__()
        self.window, self.vocab, self.confidence = window, vocab, confidence
        self.cfg = SimpleNamespace(block_size=block_size)
        self.max_positions = None

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        reach = (j < i) & (i - j <= self.window)  # (T, T)
        same = (idx[:, :, None] == idx[:, None, :]) & reach  # (B, T, T): key j holds query i's token
        latest = torch.where(same, j, -1).max(dim=2).values  # (B, T), -1: no copy in reach
        follower = idx.gather(1, (latest + 1).clamp(max=T - 1))
        return torch.where(latest >= 0, follower, -1)[..., None].float()  # (B, T, 1)

    def lm_head(self, pred: torch.Tensor) -> torch.Tensor:
        ids = pred[..., 0].long()
        logits = torch.zeros(*ids.shape, self.vocab)
        logits.scatter_(-1, ids.clamp(min=0)[..., None], torch.where(ids >= 0, self.confidence, 0.0)[..., None])
        return logits


def distinct_text(doc_sizes: list[int], vocab: int, offset: int = 0, seed: int = 0) -> EvalText:
    """Documents of tokens that repeat only every `vocab` tokens (a tiled permutation)."""
    perm = np.random.default_rng(seed).permutation(vocab) + offset
    tokens = perm[np.arange(sum(doc_sizes)) % vocab].astype(np.uint16)
    ends = np.cumsum(doc_sizes)
    return EvalText("t", tokens, [(int(e - s), int(e)) for s, e in zip(doc_sizes, ends)], [])


# --- the repeated-span inputs ---------------------------------------------------------------------


def test_repeat_inputs_are_filler_span_filler_span_at_distance_d():
    tokens = np.arange(1000, dtype=np.uint16)
    starts = np.array([300, 500])
    for d in (16, 40, 200):
        inp = RepeatInputs(d, 8, starts)
        x = inp.build(tokens)
        assert x.shape == (2, 2 * d + 8) and inp.length == 2 * d + 8
        for row, p in zip(x, starts):
            assert (row[:d] == tokens[p - d : p]).all()  # filler of length d: the text before S
            assert (row[d : d + 8] == tokens[p : p + 8]).all()  # S
            assert (row[d + 8 : 2 * d] == tokens[p + 8 : p + d]).all()  # filler: the text after S
            assert (row[2 * d :] == tokens[p : p + 8]).all()  # S again, d positions later
        first, second = inp.scored()
        assert (second - first == d).all() and len(first) == 7
        assert (x[:, first + 1] == x[:, second + 1]).all()  # the same tokens are scored in both copies
        assert (x[:, first + 1] == tokens[starts[:, None] + np.arange(1, 8)]).all()  # all but each copy's first


def test_spans_stay_inside_one_document_and_are_the_same_at_every_distance():
    docs = [(0, 300), (300, 310), (310, 2000), (2000, 2900)]  # a document too short for any span
    reach = 256
    starts = plan_spans(docs, reach, 20)
    assert len(set(starts.tolist())) == 20 and (np.diff(starts) > 0).all()
    for p in starts:
        (doc,) = [(a, b) for a, b in docs if a <= p < b]
        assert doc[0] <= p - reach and p + reach <= doc[1]  # filler, span and filler in one document
    assert set(starts) & set(range(310, 2000)) and set(starts) & set(range(2000, 2900))
    with pytest.raises(ValueError, match="eval.repeat.spans"):
        plan_spans(docs, 1000, 4)  # no document holds 2 x 1000 tokens
    with pytest.raises(ValueError, match="less than the span"):
        distances_of(64, [0.1, 1.0], 16)
    assert distances_of(64, [8, 0.25, 1, 1.0], 16) == [16, 64, 512]


def test_no_span_crosses_a_book_end_on_real_books(tmp_path):
    from evaluation.config import DocumentMode
    from evaluation.text import load_eval_text

    books = [f"data/long_stories/{b}.txt.xz" for b in ("velveteen_rabbit", "aesops_fables")]
    enc = get_tokenizer("gpt2")
    vocab = Vocab("gpt2", enc.n_vocab, enc.eot_token)
    text = load_eval_text("books", EvalSetConfig(files=books, documents=DocumentMode.eot), vocab, str(tmp_path))
    eot = enc.eot_token
    reach = 1024
    for p in plan_spans(text.docs, reach, 16):
        assert eot not in text.tokens[p - reach : p + reach - 1]  # the document's own last token is its eot


def test_usable_context_is_the_last_distance_of_an_unbroken_run_of_significant_gains():
    d = [16, 32, 64, 128]
    assert usable_context(d, [0.5, 0.2, -0.1, 0.3]) == (32, 64)  # a later significant gain does not count
    assert usable_context(d, [0.5, 0.2, 0.1, 0.3]) == (128, None)
    assert usable_context(d, [0.0, 0.2, 0.1, 0.3]) == (None, 16)


# --- hand-made models whose attention is known ----------------------------------------------------


def test_copy_model_gains_up_to_its_reach_and_nothing_beyond():
    vocab, window = 4096, 100
    text = distinct_text([3000, 2500], vocab)  # no token repeats within any probe input
    model = CopyModel(window, vocab, block_size=64)
    distances = distances_of(64, [0.25, 0.5, 1, 2, 4], 16)  # 16 .. 256
    starts = plan_spans(text.docs, distances[-1], 6)
    rows = repeat_rows(Forward(model, CPU, batch_tokens=2048), model, text.tokens, starts, distances, 16)
    uniform = math.log(vocab)
    confident = math.log(1 + (vocab - 1) * math.exp(-10.0))  # -log softmax of the logit-10 token
    for row in rows:
        assert row["loss_first"] == pytest.approx(uniform)  # no earlier copy: every token equally likely
        if row["distance"] <= window:
            assert row["loss_second"] == pytest.approx(confident, rel=1e-4)  # float32 logits
            assert row["gain_low"] == pytest.approx(uniform - confident, rel=1e-4)  # the same gain on every span
        else:
            assert row["gain"] == 0 and row["gain_low"] == 0  # out of reach: nothing to gain
    assert usable_context(distances, [r["gain_low"] for r in rows]) == (64, 128)


def test_copy_model_retrieves_the_key_only_within_its_reach():
    enc = get_tokenizer("gpt2")
    cfg = RetrievalProbeConfig(depths=[0.0, 0.9], fillers=3)
    text = distinct_text([2000], 4096, offset=40000)  # filler ids clear of the key's and query's
    window = 100
    model = CopyModel(window, enc.n_vocab, block_size=64)
    rows = retrieval_rows(Forward(model, CPU), model, enc, text.tokens, text.docs, cfg, [64, 256])
    key = enc.encode_ordinary(cfg.key.format(word=" ball"))
    key_len, query_len = len(key), len(enc.encode_ordinary(cfg.query))
    is_in_key = key.index(enc.encode_ordinary(" is")[0])  # followed by the word
    k = len(cfg.words)
    for row in rows:
        n_fill = row["length"] - key_len - query_len
        is_at = round(row["depth"] * n_fill) + is_in_key
        reach = row["length"] - 1 - is_at  # from the query's last token (" is") back to it
        if reach <= window:
            assert (row["accuracy"], row["mean_rank"]) == (1.0, 1.0)
        else:  # every candidate gets the same logit: ties share the mean rank
            assert (row["accuracy"], row["mean_rank"], row["prob"]) == (0.0, (k + 1) / 2, pytest.approx(1 / k))
        assert row["trials"] == k * 3
    assert {r["accuracy"] for r in rows} == {0.0, 1.0}  # both cases occur


def test_retrieval_inputs_hold_the_key_at_its_depth_and_the_query_last():
    tokens = np.arange(100, 200, dtype=np.uint16)
    x = build_inputs(tokens, np.array([0, 10]), 20, 0.5, [[1, 2], [3, 4]], [7, 8])
    assert x.shape == (4, 20)
    assert x[0].tolist() == list(range(100, 108)) + [1, 2] + list(range(108, 116)) + [7, 8]
    assert x[3].tolist() == list(range(110, 118)) + [3, 4] + list(range(118, 126)) + [7, 8]


# --- attention statistics -------------------------------------------------------------------------


def test_attention_stats_equal_a_loop_over_queries_and_keys():
    torch.manual_seed(0)
    B, H, T, L = 2, 3, 12, 5
    scores = torch.randn(B, H, T, T).masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    probs = scores.softmax(-1)
    stats = AttentionStats(n_layer=1, n_head=H, train_length=L)
    stats(0, probs, Positions.make(0, T, "cpu"))
    p = probs.double().numpy()
    for h in range(H):
        dist = [sum(p[b, h, i, j] * (i - j) for j in range(i + 1)) for b in range(B) for i in range(T)]
        far = [sum(p[b, h, i, j] for j in range(i + 1) if i - j > L) for b in range(B) for i in range(T) if i > L]
        assert stats.mean_distance()[0, h] == pytest.approx(np.mean(dist))
        assert stats.far_mass()[0, h] == pytest.approx(np.mean(far))
    short = AttentionStats(1, H, train_length=T)
    short(0, probs, Positions.make(0, T, "cpu"))
    assert short.far_mass() is None  # no query has keys farther than L


def test_recorded_probabilities_are_the_softmax_of_the_scores_by_hand():
    model = tiny_model("nope", n_layer=1, block_size=16)
    x = torch.randint(0, 101, (2, 10))
    seen = []
    with torch.no_grad(), record_attention(model, lambda layer, p, pos: seen.append(p)):
        model.hidden(x)
        h = model.blocks[0].ln_1(model.wte(x))
        q, k, _ = model.blocks[0].attn.c_attn(h).split(64, dim=2)
        q, k = (t.view(2, 10, 4, 16).transpose(1, 2) for t in (q, k))  # (B, H, T, D)
        scores = q @ k.transpose(-1, -2) / 4.0 + torch.full((10, 10), float("-inf")).triu(1)
    torch.testing.assert_close(seen[0], scores.softmax(-1))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_explicit_path_gives_the_fused_paths_output(encoding):
    model = tiny_model(encoding, block_size=16)
    x = torch.randint(0, 101, (2, 16))
    with torch.no_grad():
        fused = model.hidden(x)
        layers = []
        with record_attention(model, lambda layer, p, pos: layers.append(layer)):
            explicit = model.hidden(x)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    assert layers == [0, 1]
    assert all(b.attn.recorder is None for b in model.blocks)  # off again after the block


def test_attention_stats_over_windows_match_the_recorded_probabilities():
    model = tiny_model("alibi", block_size=8)
    windows = np.random.default_rng(0).integers(0, 101, (3, 24))
    stats = attention_stats(model, windows, CPU, torch.no_grad, batch_tokens=48)  # 2 windows per forward
    probs = []
    with torch.no_grad(), record_attention(model, lambda layer, p, pos: probs.append(p)):
        model.hidden(torch.from_numpy(windows))
    i, j = np.arange(24)[:, None], np.arange(24)[None, :]
    for layer in range(2):
        p = probs[layer].double().numpy()  # (3, H, 24, 24)
        np.testing.assert_allclose(stats.mean_distance()[layer], (p * np.maximum(i - j, 0)).sum(-1).mean((0, 2)))
        np.testing.assert_allclose(stats.far_mass()[layer], (p * (i - j > 8)).sum(-1)[:, :, 9:].mean((0, 2)))


# --- all probes through one call, and the report ---------------------------------------------------


SMALL_PROBES = {
    "multipliers": [1, 2], "variants": ["none", "yarn"], "progress": False, "sets": {"t": {}},
    "repeat": {"span": 2, "spans": 3, "distances": [0.25, 1, 2]},  # 2d + s = 6, 18, 34 tokens at L = 8
    "retrieval": {"lengths": [2, 4], "depths": [0.5], "fillers": 1, "words": [" cat", " dog"]},
    "attention": {"windows": 2},
}


def small_probe_cfg(**overrides) -> EvalConfig:
    """EvalConfig through OmegaConf, as Hydra builds it (nested dicts become the typed configs)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvalConfig), SMALL_PROBES | overrides))


def run_small(encoding: str, cfg: EvalConfig, seed: int = 0) -> dict:
    model = tiny_model(encoding, block_size=8, vocab_size=50257, seed=seed)
    text = EvalText("t", np.random.default_rng(seed).integers(0, 50257, 400).astype(np.uint16), [(0, 400)], [])
    enc = get_tokenizer("gpt2")
    return run_probes(model, cfg, {"t": text}, Vocab("gpt2", enc.n_vocab, enc.eot_token), CPU, log=lambda s: None)


def test_run_probes_covers_every_variant_and_respects_the_table_and_the_switch():
    cfg = small_probe_cfg()
    rope = run_small("rope", cfg)
    assert [v["variant"] for v in rope["repeat"]["sets"]["t"]["variants"]] == ["none", "yarn"]
    none, yarn = (v["rows"] for v in rope["repeat"]["sets"]["t"]["variants"])
    assert none[0]["gains"] == pytest.approx(yarn[0]["gains"])  # 2d + s <= L: factor 1, the same model
    assert none[-1]["gains"] != pytest.approx(yarn[-1]["gains"])
    assert np.array(rope["attention"]["variants"][0]["mean_distance"]).shape == (2, 4, 2)  # layer, head, length
    json.dumps(rope)
    learned = run_small("learned", cfg)
    assert [r["note"] for r in learned["repeat"]["sets"]["t"]["variants"][0]["rows"]] == [
        None, "n/a (table length 8)", "n/a (table length 8)"]
    assert learned["attention"]["lengths"] == [8]
    assert run_small("rope", small_probe_cfg(probes=[])) == {}
    with pytest.raises(Exception, match="bogus"):
        OmegaConf.merge(OmegaConf.structured(EvalConfig), OmegaConf.create({"probes": ["bogus"]}))
    with pytest.raises(ValueError, match="eval.retrieval.words"):
        run_small("nope", small_probe_cfg(retrieval={"words": [" cat", " elephantine"]}))


def test_the_plans_forwards_by_length_are_what_the_probes_forward():
    """compare.py's estimate times the probes from ProbePlan.forwards: per variant, tokens
    forwarded at each length; here every model.hidden call of a real run is recorded."""
    from collections import Counter
    from evaluation.probes.run import ProbePlan
    cfg = small_probe_cfg()
    model = tiny_model("rope", block_size=8, vocab_size=50257)
    text = EvalText("t", np.random.default_rng(0).integers(0, 50257, 400).astype(np.uint16), [(0, 400)], [])
    plan = ProbePlan(model, cfg, {"t": text})
    seen, hidden = Counter(), model.hidden
    def recording_hidden(x, *args, **kwargs):
        seen[x.shape[1]] += x.numel()
        return hidden(x, *args, **kwargs)
    model.hidden = recording_hidden
    enc = get_tokenizer("gpt2")
    run_probes(model, cfg, {"t": text}, Vocab("gpt2", enc.n_vocab, enc.eot_token), CPU, log=lambda s: None)
    planned = Counter()
    for by_length in plan.forwards.values():
        for T, tokens in by_length.items():
            planned[T] += tokens * len(plan.variants)
    assert seen == planned and len(planned) > 2


@pytest.mark.slow
def test_report_has_the_usable_context_section(tmp_path):
    from tests.test_compare import compose_compare, fake_run

    job = OmegaConf.to_container(compose_compare(["preset=cpu", "seeds=[0,1]", "model.block_size=8"]),
                                 resolve=True, enum_to_str=True)
    text = EvalText("small", np.random.default_rng(0).integers(0, 101, 400).astype(np.uint16), [(0, 400)], [])
    cfg = small_probe_cfg(probes=[], sets={"small": EvalSetConfig(max_tokens=None)})
    records = []
    for enc in ("rope", "learned"):
        for seed in (0, 1):
            run_dir = tmp_path / "runs" / f"{enc}-s{seed}"
            fake_run(run_dir, job, enc, seed, [5.0, 4.5], 100.0, text, cfg)
            result = json.loads((run_dir / EVAL_FILE).read_text())
            result["probes"] = run_small(enc, small_probe_cfg(), seed)
            (run_dir / EVAL_FILE).write_text(json.dumps(result))
            records.append(load_run(run_dir))
    info = {"command": "test", "code": {"commit": "0" * 40, "dirty": False}, "started": "now", "device": "cpu",
            "train_tokens": 1000, "val_tokens": 100, "vocab_size": 50257,
            "phases": {"training": 1.0}, "wall_s": 1.0}
    report = write_report(tmp_path / "report", records, job, info).read_text()
    section = report[report.index("## Usable context"):]
    for title in ("### Repeated span", "### Key-value retrieval", "### Attention statistics"):
        assert title in section
    assert "2 window(s) of t per length" in section
    for lbl in ("| rope |", "| rope + yarn |", "| learned |"):
        assert section.count(lbl) == 3  # one row in each table
    learned_row = next(line for line in section.splitlines() if line.startswith("| learned |"))
    assert "n/a (table length 8)" in learned_row
    for png in ("repeat_gain_t.png", "retrieval.png", "attention_rope.png", "attention_learned.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
