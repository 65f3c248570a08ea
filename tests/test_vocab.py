"""data.vocab_size: the most frequent ids of the training split, densely renumbered, one unknown id;
the map in meta.json and in the checkpoint, evaluation and sampling through it, mismatches as errors.
The references are plain Python: a sort of (count, id) pairs and a dict lookup."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from train_helpers import ROOT, TINY, subprocess_env

from data.config import DataConfig
from data.encode import get_tokenizer
from data.prepare import ensure_prepared
from data.tokens import DataError, load_tokens, read_meta
from data.vocab import UNK_MARKER, Vocab, count_ids, most_frequent
from evaluation.config import EvalSetConfig
from evaluation.text import load_eval_text
from model.generate import generate
from training.checkpoint import CheckpointError, load_checkpoint, load_model_and_vocab, save_checkpoint
from configs.compose import compose_job
from training.run import run_training

EOT = 50256
SAMPLE = ["data=tinystories_sample", "data.num_proc=1"]


def reference_kept(tokens: list[int], n: int, eot: int) -> list[int]:
    """End-of-text and the n - 1 most frequent other ids, ties to the lower id, ascending."""
    counts = Counter(tokens)
    others = sorted((t for t in counts if t != eot), key=lambda t: (-counts[t], t))
    return sorted([eot, *others[: n - 1]])


def test_most_frequent_matches_a_plain_sort_with_ties_broken_by_id():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 60, 2000).tolist() + [7, 8, 9] * 5 + [EOT % 64] * 3  # ties among 7, 8, 9
    for n in (2, 5, 17, 40):
        vocab = most_frequent(count_ids(np.array(tokens, dtype=np.uint16), 64), n, "gpt2", EOT % 64)
        assert list(vocab.kept) == reference_kept(tokens, n, EOT % 64)
        assert vocab.size == n + 1 and vocab.unk_id == n


def test_end_of_text_is_kept_even_when_rare_and_a_large_size_keeps_every_id_that_occurs():
    tokens = [1, 1, 1, 2, 2, 3, 9]  # end-of-text 9 occurs once, fewer times than 1, 2
    assert most_frequent(count_ids(np.array(tokens), 10), 2, "gpt2", 9).kept == (1, 9)
    big = most_frequent(count_ids(np.array(tokens), 10), 1000, "gpt2", 9)
    assert big.kept == (1, 2, 3, 9) and big.size == 5  # every id that occurs, plus the unknown id
    with pytest.raises(DataError, match="vocab_size=1"):
        most_frequent(count_ids(np.array(tokens), 10), 1, "gpt2", 9)


def test_round_trip_unknown_ids_and_decoding():
    enc = get_tokenizer("gpt2")
    text = "Once upon a time, a cat sat on the mat. The cat was happy."
    ids = enc.encode_ordinary(text) + [enc.eot_token]
    vocab = most_frequent(count_ids(np.array(ids, dtype=np.uint16), enc.n_vocab), 6, "gpt2", enc.eot_token)
    table = {t: i for i, t in enumerate(vocab.kept)}  # the reference map
    model_ids = vocab.to_model(np.array(ids))
    assert model_ids.tolist() == [table.get(t, vocab.unk_id) for t in ids]
    back = vocab.to_tokenizer(model_ids)
    assert back == [t if t in table else None for t in ids]  # kept ids round-trip, the rest are unknown
    decoded = vocab.decode(enc, model_ids)
    expected = "".join(enc.decode([t]) if t in table else UNK_MARKER for t in ids)
    assert decoded == expected and UNK_MARKER in decoded
    assert vocab.eot_id == table[enc.eot_token]
    assert Vocab.from_dict(vocab.to_dict()) == vocab
    full = Vocab("gpt2", enc.n_vocab, enc.eot_token)
    assert full.unk_id is None and full.size == 50257 and full.decode(enc, ids) == text + "<|endoftext|>"


def prepared(tmp_path, vocab_size):
    cfg = DataConfig(name="s", train_files=["data/sample/train.txt"], val_files=["data/sample/valid.txt"],
                     cache_dir=str(tmp_path / f"v{vocab_size}"), num_proc=1, vocab_size=vocab_size)
    return ensure_prepared(cfg)


def test_prepare_writes_the_map_and_the_mapped_tokens(tmp_path):
    full, small = prepared(tmp_path, None), prepared(tmp_path, 300)
    raw_train, raw_val = load_tokens(full, "train").tolist(), load_tokens(full, "val").tolist()
    meta = read_meta(small)
    kept = reference_kept(raw_train, 300, EOT)
    assert meta["vocab"]["kept"] == kept and meta["vocab_size"] == 301 and meta["eot_token"] == kept.index(EOT)
    table = {t: i for i, t in enumerate(kept)}
    assert load_tokens(small, "train").tolist() == [table.get(t, 300) for t in raw_train]
    assert load_tokens(small, "val").tolist() == [table.get(t, 300) for t in raw_val]
    assert read_meta(full)["vocab"]["kept"] is None and read_meta(full)["vocab_size"] == 50257


def test_eval_text_goes_through_the_training_map_with_its_unknown_rate(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text("The zebra quietly contemplated quantum chromodynamics. The cat sat.\n")
    enc = get_tokenizer("gpt2")
    raw = enc.encode_ordinary(book.read_text().strip()) + [enc.eot_token]
    the = enc.encode_ordinary(" The")[0]
    vocab = Vocab("gpt2", enc.n_vocab, enc.eot_token, tuple(sorted({the, enc.eot_token})))
    text = load_eval_text("b", EvalSetConfig(files=[str(book)]), vocab, str(tmp_path / "cache"))
    expected = [vocab.kept.index(t) if t in vocab.kept else vocab.unk_id for t in raw]
    assert text.tokens.tolist() == expected
    assert text.unknown_rate == pytest.approx(sum(t == vocab.unk_id for t in expected) / len(expected))


@pytest.fixture(scope="module")
def small_vocab_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab_run")
    cache = root / "cache"
    overrides = [*TINY, *SAMPLE, f"data.cache_dir={cache}", "data.vocab_size=500", "pos=learned",
                 "train.max_steps=2", "train.eval_interval=2", "train.ckpt_interval=2"]
    run_training(compose_job([*overrides, f"out_dir={root / 'run'}"]))
    return root / "run", cache, overrides


def test_the_map_is_in_the_checkpoint_and_sizes_the_model(small_vocab_run):
    run, cache, _ = small_vocab_run
    ckpt = load_checkpoint(run / "ckpt_last.pt")
    assert ckpt["vocab"] == read_meta(cache)["vocab"] and ckpt["vocab"]["size"] == 501
    assert ckpt["model"]["wte.weight"].shape[0] == 501
    model, cfg, vocab = load_model_and_vocab(run)
    assert cfg["model"]["vocab_size"] is None  # the config says "the data's": the map says how many
    assert vocab.size == model.cfg.vocab_size == 501


def test_resume_with_another_vocabulary_is_an_error(tmp_path, small_vocab_run):
    run, cache, overrides = small_vocab_run
    keep = [o for o in overrides if not o.startswith(("data.vocab_size", "data.cache_dir"))]
    job = compose_job([*keep, "data.vocab_size=400", f"data.cache_dir={tmp_path}", "train.max_steps=4",
                       f"out_dir={run}", "resume=true"])
    with pytest.raises(CheckpointError, match=r"500 of gpt2's 50,257 ids \+ 1 unknown id, the data now gives 400"):
        run_training(job)


def test_model_vocab_size_that_disagrees_with_the_data_is_an_error(tmp_path, small_vocab_run):
    _, cache, overrides = small_vocab_run
    with pytest.raises(ValueError, match="model.vocab_size=50257, but the data's vocabulary has 501"):
        run_training(compose_job([*overrides, "model.vocab_size=50257", f"out_dir={tmp_path / 'r'}"]))


def test_a_checkpoint_whose_map_does_not_fit_its_weights_is_an_error(tmp_path, small_vocab_run):
    run, _, _ = small_vocab_run
    state = load_checkpoint(run / "ckpt_last.pt")
    state["vocab"]["kept"] = state["vocab"]["kept"][:-3] + [state["vocab"]["kept"][-1]]
    state["vocab"]["size"] -= 2
    save_checkpoint(state, tmp_path / "ckpt_best.pt")
    with pytest.raises(CheckpointError, match="does not match its model config"):
        load_model_and_vocab(tmp_path)


@pytest.mark.slow
def test_sample_py_decodes_through_the_checkpoint_map(small_vocab_run):
    run, _, _ = small_vocab_run
    model, _, vocab = load_model_and_vocab(run)
    enc = get_tokenizer("gpt2")
    prompt = "Once upon a zebra"  # "zebra" is no TinyStories sample id: the prompt holds the unknown id
    prompt_ids = [vocab.kept.index(t) if t in vocab.kept else vocab.unk_id for t in enc.encode(prompt)]
    assert vocab.unk_id in prompt_ids
    torch.manual_seed(0)
    with torch.no_grad():  # make the unknown id the likeliest next token, so it is printed
        model.lm_head.weight[vocab.unk_id] += 0.5 * model.lm_head.weight[prompt_ids[-2]]
    state = load_checkpoint(run / "ckpt_last.pt")
    state["model"] = model.state_dict()
    save_checkpoint(state, run.parent / "biased" / "ckpt_best.pt")
    tokens = [int(t) for t in generate(model, torch.tensor([prompt_ids]), 12, temperature=0.0,
                                       stop_token=vocab.eot_id)]
    tokens = tokens[: tokens.index(vocab.eot_id)] if vocab.eot_id in tokens else tokens
    pieces, run_ids = [], []  # the reference decoding: runs of known ids through tiktoken, ⁇ between
    for t in tokens:
        if t == vocab.unk_id:
            pieces, run_ids = [*pieces, enc.decode(run_ids), UNK_MARKER], []
        else:
            run_ids.append(vocab.kept[t])
    expected = "".join(pieces) + enc.decode(run_ids)
    assert UNK_MARKER in expected
    done = subprocess.run([sys.executable, "sample.py", f"ckpt={run.parent / 'biased'}", f"prompt={prompt}",
                           "temperature=0", "max_new_tokens=12", "device=cpu"],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == prompt + expected


def test_evaluation_reports_the_unknown_rate_beside_the_perplexity():
    from evaluation.config import EvalConfig, Protocol
    from evaluation.extrapolation import evaluate_model, format_rows
    from evaluation.text import EvalText
    from tests.model_helpers import tiny_model

    model = tiny_model("alibi", block_size=8, n_layer=1, n_embd=32, vocab_size=101)
    tokens = np.random.default_rng(0).integers(0, 101, 100).astype(np.uint16)
    text = EvalText(name="t", tokens=tokens, docs=[(0, 100)], files=[], unknown_rate=0.25)
    cfg = EvalConfig(multipliers=[1], protocols=[Protocol.nonoverlap], progress=False,
                     sets={"t": EvalSetConfig(max_tokens=None)})
    result = evaluate_model(model, cfg, {"t": text}, torch.device("cpu"), log=lambda s: None)
    assert result["sets"]["t"]["unknown_rate"] == 0.25
    assert "t: 96 scored tokens per cell, 25.00% unknown tokens" in format_rows(result)
