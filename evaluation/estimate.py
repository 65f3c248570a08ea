"""compare.py's expected time, measured before the work starts: a few training steps, one
evaluation batch per (length, protocol) and one probe batch per forward length of each encoding,
on random weights (the cost of a step does not depend on the weights), with the thread count each
run will get.

    training   steps to go x measured seconds per step (a step = grad_accum micro-batches)
    evaluation per (length, protocol): windows x measured seconds per window (the same windows as
               the real evaluation, one batch of them), summed over the RoPE scalings and sets;
               probes: tokens forwarded at each length x measured seconds per token there, x variants
    wall       the sum of both over runs, divided by `jobs`, times the slowdown of `jobs` runs side
               by side, measured by timing training steps in `jobs` processes at once (runs in
               parallel share caches and memory bandwidth: on the 2-core development machine a
               preset=cpu step took 1.0-1.2 s with two runs side by side, 0.55-0.85 s alone)

The measured cost of each encoding's run also orders the parallel runs, longest first.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from data.vocab import Vocab
from evaluation.config import EvalConfig
from evaluation.extrapolation import load_texts, plan_tasks
from training.device import resolve_device
from evaluation.perplexity import WindowScorer
from evaluation.probes.attention import attention_stats
from evaluation.probes.forward import Forward
from evaluation.probes.run import ProbePlan
from evaluation.windows import Windows
from model.positional import config_class
from training.build import build_model
from training.precision import autocast, resolve_dtype

TIMED_STEPS = 2


def _time(fn, reps: int, warm_up: bool = True) -> float:
    if warm_up:
        fn()  # first-call allocations
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def train_step_seconds(model_cfg, train_cfg, encoding: str, device: torch.device, vocab_size: int,
                       barrier=None) -> float:
    """Seconds per optimizer step of `encoding` (after a warm-up step; `barrier`: wait for the
    other side-by-side processes before timing)."""
    model = build_model(model_cfg, OmegaConf.structured(config_class(encoding)), vocab_size).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t = train_cfg
    idx = torch.randint(0, model.cfg.vocab_size, (t.batch_size, model.cfg.block_size + 1), device=device)
    accum = t.global_batch_size // t.batch_size

    def step() -> None:
        for _ in range(accum):
            model(idx[:, :-1], idx[:, 1:])[1].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: first-call allocations
    if barrier is not None:
        barrier.wait()
    return _time(step, TIMED_STEPS, warm_up=False)


def _side_by_side_step(model_cfg: dict, train_cfg: dict, encoding: str, device: str, vocab_size: int,
                       threads: int, barrier, results) -> None:
    """One of `jobs` worker processes of `side_by_side_slowdown`."""
    torch.set_num_threads(threads)
    results.put(train_step_seconds(OmegaConf.create(model_cfg), OmegaConf.create(train_cfg), encoding,
                                   torch.device(device), vocab_size, barrier))


def side_by_side_slowdown(cfg: DictConfig, encoding: str, device: torch.device, vocab_size: int, threads: int,
                          alone: float) -> float:
    """Seconds per training step with cfg.jobs processes stepping at once, over `alone` (the
    same step in one process): what running the comparison's runs side by side costs each of them."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(cfg.jobs), ctx.Queue()
    args = (OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.train, resolve=True),
            encoding, str(device), vocab_size, threads, barrier, results)
    procs = [ctx.Process(target=_side_by_side_step, args=args, daemon=True) for _ in range(cfg.jobs)]
    for proc in procs:
        proc.start()
    try:
        times = [results.get(timeout=600) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return max(1.0, sum(times) / len(times) / alone)


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
    return total + probe_seconds(model, eval_cfg, texts, device)


def probe_seconds(model, eval_cfg: EvalConfig, texts: dict, device: torch.device) -> float:
    """The planned probes of one run: at every forward length, tokens forwarded x measured seconds
    per token (one batch of random tokens: a forward's cost does not depend on them), x variants.
    The attention probe is timed on its own, explicit attention path."""
    plan = ProbePlan(model, eval_cfg, texts)
    dtype = resolve_dtype(eval_cfg.dtype, device)
    forward = Forward(model.eval(), device, lambda: autocast(device, dtype), eval_cfg.batch_tokens)
    total = 0.0
    for probe, by_length in plan.forwards.items():
        for T, tokens in by_length.items():
            inputs = np.random.randint(0, model.cfg.vocab_size, (max(1, eval_cfg.batch_tokens // T), T))
            if probe == "attention":
                def run():
                    attention_stats(model, inputs, device, forward.autocast, eval_cfg.batch_tokens)
            else:
                def run():
                    forward.log_probs(inputs, np.array([T - 1]))
            total += _time(run, 1, warm_up=False) / inputs.size * tokens
    return total * len(plan.variants)


def estimate_line(cfg: DictConfig, specs: list, statuses: list[str], threads: int,
                  vocab: Vocab) -> tuple[str, dict[str, float]]:
    """(`expected: ~X min (...)`, measured seconds of one run of each encoding), from a warm-up measured now."""
    device = resolve_device(cfg.eval.device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        texts = load_texts(OmegaConf.to_object(cfg.eval), vocab)
        train_s, eval_s, per_enc, cost, first_step = 0.0, 0.0, [], {}, None
        for enc in dict.fromkeys(s.encoding for s in specs):
            todo = sum(st != "done" for s, st in zip(specs, statuses) if s.encoding == enc)
            if not todo:  # finished earlier (its evaluation too, unless the eval settings changed)
                continue
            step = train_step_seconds(cfg.model, cfg.train, enc, device, vocab.size)
            first_step = first_step or (enc, step)
            ev = eval_seconds(cfg, enc, texts, device, vocab.size)
            cost[enc] = step * cfg.train.max_steps + ev
            train_s += step * cfg.train.max_steps * todo
            eval_s += ev * todo
            per_enc.append(f"{enc} {step:.2f} s/step, evaluation {ev / 60:.1f} min")
        slowdown, runs = None, sum(st != "done" for st in statuses)
        if first_step is not None and cfg.jobs > 1 and runs > 1:
            slowdown = side_by_side_slowdown(cfg, first_step[0], device, vocab.size, threads, first_step[1])
    finally:
        torch.set_num_threads(before)
    if not per_enc:
        return "expected: every run finished earlier; only missing evaluations, samples and the report remain", cost
    wall = (train_s + eval_s) / min(cfg.jobs, max(1, runs)) * (slowdown or 1.0)
    side = (f", x {slowdown:.2f} for {cfg.jobs} runs side by side ({first_step[0]}'s step timed in {cfg.jobs} "
            f"processes at once)" if slowdown is not None else "")
    return (f"expected: ~{wall / 60:.0f} min with jobs={cfg.jobs} x {threads} thread(s) (training {train_s / 60:.1f} "
            f"+ evaluation and probes {eval_s / 60:.1f} min of run time alone{side}; not counting samples), "
            f"measured just now in {time.perf_counter() - start:.0f} s at a 1-minute load average of "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: {'; '.join(per_enc)}; pass estimate=false to "
            f"skip this"), cost
