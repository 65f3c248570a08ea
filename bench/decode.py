"""Decode speed: new tokens per second for N new tokens after a short prompt, batch 1, greedy.

Contenders, all with random weights at the same shape and interleaved (see bench/common.py):

    ours cached     model/generate.py `generate(temperature=0)`: one prefill, then one-token steps
                    over the preallocated KV cache (every encoding)
    ours compiled   the same with `compile=True` (--compile): the compiled fixed-shape step,
                    CUDA graphs on CUDA (model/fixed_step.py)
    ours uncached   a full forward over the whole growing sequence at every step (logits of the
                    last position only), argmax: what decoding costs without a cache
    HF GPT2         Hugging Face GPT2LMHeadModel.generate with its (dynamic) cache, greedy,
                    min_new_tokens = max_new_tokens so it cannot stop early; learned positions

A learned table only holds block_size positions, so block_size defaults to prompt + new tokens.
Rates are new tokens / seconds of the whole call, prefill included. Example (CPU):

    python bench/decode.py --threads 1 --new-tokens 1024 --reps 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor, nn

if __package__ in (None, ""):  # run as a script (python bench/decode.py): find the project
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    DTYPES,
    Timings,
    add_time_arguments,
    allow_recompiles,
    command_line,
    machine_line,
    markdown_table,
    median,
    setup,
    spread,
    time_interleaved,
    warm_up,
)
from bench.train_step import VOCAB, Shape, hf_gpt2
from model import GPT
from model.positional import config_class, encoding_names
from model.generate import generate


def ours_cached(model: nn.Module, prompt: Tensor, n: int, compile: bool = False) -> Tensor:
    """(n,) new token ids from KV-cached greedy generation (`compile`: the compiled fixed-shape
    step, CUDA graphs on CUDA)."""
    return torch.cat(list(generate(model, prompt, n, temperature=0.0, compile=compile)))


@torch.inference_mode()
def ours_uncached(model: GPT, prompt: Tensor, n: int) -> Tensor:
    """(n,) new token ids, each from a full forward over everything so far (logits of the last
    position only, as an uncached sampler would ask for)."""
    idx = prompt
    for _ in range(n):
        logits, _ = model(idx, last_only=True)  # (1, 1, V)
        idx = torch.cat((idx, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return idx[0, prompt.shape[1] :]


@torch.inference_mode()
def hf_generate(model: nn.Module, prompt: Tensor, n: int, use_cache: bool = True) -> Tensor:
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        use_cache=use_cache,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[0, prompt.shape[1] :]


def build(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict[str, Callable[[], Tensor]]:
    """name -> a zero-argument call producing the new tokens (its models built and on device).
    Every contender's calls share one prompt; each encoding's model is built once."""
    block = args.block_size or args.prompt_len + args.new_tokens
    shape = Shape(args.n_layer, args.n_head, args.n_embd, block, batch_size=1)
    cfg = shape.model_config()
    gen = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, VOCAB, (1, args.prompt_len), generator=gen).to(device)
    n = args.new_tokens
    calls: dict[str, Callable[[], Tensor]] = {}
    if not args.no_hf:  # first: a run cut short by --time-limit still has the baseline
        hf = hf_gpt2(shape).model.to(device=device, dtype=dtype).eval()
        calls["HF GPT2 generate (cache)"] = lambda: hf_generate(hf, prompt, n)
        if args.hf_uncached:
            calls["HF GPT2 generate (no cache)"] = lambda: hf_generate(hf, prompt, n, use_cache=False)
    for enc in args.encodings:
        model = GPT(cfg, config_class(enc)()).to(device=device, dtype=dtype).eval()
        calls[f"ours cached {enc}"] = lambda m=model: ours_cached(m, prompt, n)
        if args.compile:
            calls[f"ours compiled {enc}"] = lambda m=model: ours_cached(m, prompt, n, compile=True)
        if not args.no_uncached:
            calls[f"ours uncached {enc}"] = lambda m=model: ours_uncached(m, prompt, n)
    return calls


def check_same_tokens(calls: dict[str, Callable[[], Tensor]], encodings: list[str]) -> dict[str, bool]:
    """encoding -> whether cached (and compiled) greedy decoding give the uncached loop's tokens
    (only encodings whose uncached contender is being timed)."""
    same = {}
    for enc in encodings:
        uncached = calls.get(f"ours uncached {enc}")
        fast = [calls[name] for name in (f"ours cached {enc}", f"ours compiled {enc}") if name in calls]
        if uncached is not None and fast:
            want = uncached()
            same[enc] = all(torch.equal(call(), want) for call in fast)
    return same


def report(timings: Timings, clock: str, n: int) -> str:
    """Tokens/s per contender, and for ours cached: its speed-up over our uncached loop (same
    encoding) and over HF GPT2's cached generate (the learned encoding is GPT2's architecture)."""
    times = timings.on(clock)
    hf = times.get("HF GPT2 generate (cache)")
    headers = ["contender", "wall s", "cpu s", "spread", "tokens/s", "ms/token", "x uncached", "x HF cache"]
    rows = []
    for name, ts in times.items():
        t = median(ts)
        vs_uncached, vs_hf = "-", "-"
        if name.startswith(("ours cached", "ours compiled")):
            enc = name.rsplit(" ", 1)[1]
            un = times.get(f"ours uncached {enc}")
            vs_uncached = f"{median(un) / t:.1f}x" if un else "-"
            vs_hf = f"{median(hf) / t:.2f}x" if hf else "-"
        rows.append(
            [name, f"{median(timings.wall[name]):.2f}", f"{median(timings.cpu[name]):.2f}", spread(ts),
             f"{n / t:,.0f}", f"{1e3 * t / n:.2f}", vs_uncached, vs_hf]
        )
    return markdown_table(headers, rows)


def run(args: argparse.Namespace) -> Optional[Timings]:
    """Warm every contender up, time them interleaved, print the table; None with --compile-only."""
    device = setup(args.device, args.threads, args.seed)
    dtype = DTYPES[args.dtype]
    calls = build(args, device, dtype)
    if args.compile:
        allow_recompiles(2 * len(args.encodings))  # one compiled step per encoding's model
    same = check_same_tokens(calls, args.encodings) if args.check else {}
    make = {name: (lambda call=call: call) for name, call in calls.items()}
    calls = warm_up(make, args.warmup, device, args.time_limit, keep=not args.compile_only)
    if args.compile_only:
        return None
    timings = time_interleaved(calls, args.reps, 0, device)
    block = args.block_size or args.prompt_len + args.new_tokens
    print(f"\n{command_line()}\n{machine_line(device)}")
    print(
        f"shape: n_layer {args.n_layer}, n_head {args.n_head}, n_embd {args.n_embd}, block {block}, "
        f"vocab {VOCAB}, batch 1; prompt {args.prompt_len} + {args.new_tokens} new tokens, greedy; "
        f"dtype {args.dtype}; "
        f"{args.reps} reps after {args.warmup} warmup; ratios on the {args.clock} clock\n"
    )
    print(report(timings, args.clock, args.new_tokens))
    if same:
        bad = [enc for enc, ok in same.items() if not ok]
        print(f"\ncached == uncached tokens: {'NO for ' + ', '.join(bad) if bad else 'yes'} ({', '.join(same)})")
    elif args.check:
        print("\ncached == uncached tokens: not checked (no uncached contender)")
    return timings


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block-size", type=int, default=None, help="default: prompt + new tokens")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=1024)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="weights and cache dtype")
    p.add_argument("--compile", action="store_true",
                   help="also time 'ours compiled': generate(compile=True), the compiled fixed-shape "
                        "step (CUDA graphs on CUDA; the first warmup call compiles)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--encodings", nargs="+", choices=encoding_names(), default=encoding_names())
    p.add_argument("--no-uncached", action="store_true", help="skip our uncached loop (slow for long runs)")
    p.add_argument("--no-hf", action="store_true", help="skip Hugging Face generate")
    p.add_argument("--hf-uncached", action="store_true", help="also time HF generate with use_cache=False")
    p.add_argument("--check", action="store_true", help="check cached == uncached tokens first")
    p.add_argument("--seed", type=int, default=0)
    add_time_arguments(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
