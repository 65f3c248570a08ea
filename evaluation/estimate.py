"""compare.py's expected time, measured before the work starts: a few training steps and one
evaluation batch per (length, protocol) of each encoding, on random weights (the cost of a step
does not depend on the weights), with the thread count each run will get.

    training   steps to go x measured seconds per step (a step = grad_accum micro-batches)
    evaluation per (length, protocol): windows x measured seconds per window (the same windows as
               the real evaluation, one batch of them), summed over the RoPE scalings and sets
    wall       the sum of both over runs, divided by `jobs` (runs in parallel share nothing but
               the machine; on a loaded machine it takes longer, and the line says the load)

The measured cost of each encoding's run also orders the parallel runs, longest first.
"""

from __future__ import annotations

import os
import time

import torch
from omegaconf import DictConfig, OmegaConf

from data.vocab import Vocab
from evaluation.config import EvalConfig
from evaluation.extrapolation import load_texts, plan_tasks
from training.device import resolve_device
from evaluation.perplexity import WindowScorer
from evaluation.windows import Windows
from model.positional import config_class
from training.build import build_model

TIMED_STEPS = 2


def _time(fn, reps: int) -> float:
    fn()  # warm-up: first-call allocations
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def train_step_seconds(cfg: DictConfig, encoding: str, device: torch.device, vocab_size: int) -> float:
    model = build_model(cfg.model, OmegaConf.structured(config_class(encoding)), vocab_size).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t = cfg.train
    idx = torch.randint(0, model.cfg.vocab_size, (t.batch_size, model.cfg.block_size + 1), device=device)
    accum = t.global_batch_size // t.batch_size

    def step() -> None:
        for _ in range(accum):
            model(idx[:, :-1], idx[:, 1:])[1].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _time(step, TIMED_STEPS)


def eval_seconds(cfg: DictConfig, encoding: str, texts: dict, device: torch.device, vocab_size: int) -> float:
    """The planned evaluation of one run: every distinct task's windows x measured s per window."""
    eval_cfg: EvalConfig = OmegaConf.to_object(cfg.eval)
    model = build_model(cfg.model, OmegaConf.structured(config_class(encoding)), vocab_size).to(device)
    tasks, _ = plan_tasks(model, eval_cfg, texts)
    unique = {t.key: t for t in tasks if t.windows is not None}
    scorer = WindowScorer(model, device, batch_tokens=eval_cfg.batch_tokens)
    per_window: dict[tuple, float] = {}
    total = 0.0
    for t in unique.values():
        shape = (t.length, t.protocol)
        if shape not in per_window:
            n = min(len(t.windows), max(1, eval_cfg.batch_tokens // t.length))
            w = t.windows
            sub = Windows(w.length, w.starts[:n], w.score_from[:n], w.score_to[:n])
            tokens = texts[t.set_name].tokens
            per_window[shape] = _time(lambda: scorer.score(tokens, sub), 1) / n
        total += per_window[shape] * len(t.windows)
    return total


def estimate_line(cfg: DictConfig, specs: list, statuses: list[str], threads: int,
                  vocab: Vocab) -> tuple[str, dict[str, float]]:
    """(`expected: ~X min (...)`, measured seconds of one run of each encoding), from a warm-up measured now."""
    device = resolve_device(cfg.eval.device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        texts = load_texts(OmegaConf.to_object(cfg.eval), vocab)
        train_s, eval_s, per_enc, cost = 0.0, 0.0, [], {}
        for enc in dict.fromkeys(s.encoding for s in specs):
            todo = sum(st != "done" for s, st in zip(specs, statuses) if s.encoding == enc)
            if not todo:  # finished earlier (its evaluation too, unless the eval settings changed)
                continue
            step = train_step_seconds(cfg, enc, device, vocab.size)
            ev = eval_seconds(cfg, enc, texts, device, vocab.size)
            cost[enc] = step * cfg.train.max_steps + ev
            train_s += step * cfg.train.max_steps * todo
            eval_s += ev * todo
            per_enc.append(f"{enc} {step:.2f} s/step")
    finally:
        torch.set_num_threads(before)
    if not per_enc:
        return "expected: every run finished earlier; only missing evaluations, samples and the report remain", cost
    wall = (train_s + eval_s) / cfg.jobs
    return (f"expected: ~{wall / 60:.0f} min with jobs={cfg.jobs} x {threads} thread(s) (training {train_s / 60:.1f} "
            f"+ evaluation {eval_s / 60:.1f} min of run time, not counting samples), measured just now in "
            f"{time.perf_counter() - start:.0f} s at a 1-minute load average of {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs: {', '.join(per_enc)}; pass estimate=false to skip this"), cost
