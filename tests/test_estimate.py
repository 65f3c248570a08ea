"""compare.py's expected time (evaluation/estimate.py): the side-by-side slowdown is measured in
real worker processes, and the probes are part of the evaluation time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from data.encode import get_tokenizer
from data.vocab import Vocab
from evaluation.estimate import eval_seconds, side_by_side_slowdown
from evaluation.extrapolation import load_texts
from tests.test_compare import compose_compare

CPU = torch.device("cpu")
SMALL = ["preset=smoke", "jobs=2", "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=16",
         "train.batch_size=2", "train.global_batch_size=2"]
PROBES = ["eval.multipliers=[1,2]", "eval.sets.tinystories.max_tokens=256", "eval.sets.long_stories.max_tokens=256",
          "eval.sets.long_stories.files=[data/long_stories/velveteen_rabbit.txt.xz]", "eval.repeat.spans=2",
          "eval.repeat.span=4", "eval.repeat.distances=[0.5,1]", "eval.retrieval.lengths=[1]",
          "eval.retrieval.depths=[0.5]", "eval.retrieval.fillers=1", "eval.attention.windows=1"]


def test_side_by_side_slowdown_is_the_workers_step_time_over_the_step_alone():
    cfg = compose_compare(SMALL)
    # the workers' real steps take far longer than a nanosecond, and never count as faster than alone
    assert side_by_side_slowdown(cfg, "rope", CPU, 64, 1, alone=1e-9) > 1000
    assert side_by_side_slowdown(cfg, "rope", CPU, 64, 1, alone=1e9) == 1.0


def test_evaluation_time_includes_the_probes():
    cfg = compose_compare(SMALL + PROBES)
    enc = get_tokenizer("gpt2")
    vocab = Vocab("gpt2", enc.n_vocab, enc.eot_token)
    texts = load_texts(OmegaConf.to_object(cfg.eval), vocab)
    torch.manual_seed(0)
    with_probes = eval_seconds(cfg, "rope", texts, CPU, vocab.size)
    cfg.eval.probes = []
    without = eval_seconds(cfg, "rope", texts, CPU, vocab.size)
    assert np.isfinite(with_probes) and with_probes > without > 0


def test_the_expected_time_line_says_the_measured_side_by_side_slowdown(tmp_path):
    from evaluation.ablation import make_specs
    from evaluation.estimate import estimate_line

    cfg = compose_compare(SMALL + PROBES + ["encodings=[rope,alibi]", f"out_dir={tmp_path}", "eval.multipliers=[1]"])
    enc = get_tokenizer("gpt2")
    specs = make_specs(cfg)
    line, cost = estimate_line(cfg, specs, ["new"] * len(specs), 1, Vocab("gpt2", enc.n_vocab, enc.eot_token))
    assert line.startswith("expected: ~") and "runs side by side (rope's step timed in 2 processes at once)" in line
    assert set(cost) == {"rope", "alibi"} and all(c > 0 for c in cost.values())
