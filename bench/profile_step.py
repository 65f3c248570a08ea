"""Where a training step goes: self CPU time per step of each contender of bench/train_step.py,
grouped by operator class (torch.profiler), to explain the ratios that train_step.py measures.

    python bench/profile_step.py --threads 1                      # tiny shape, every encoding and peer
    python bench/profile_step.py --threads 1 --encodings learned rope --no-peers

Contenders run one after another (not interleaved), so totals move with the machine's load; the
split between classes is the useful part. CPU only (a CUDA step's time is in kernels that the CPU
profiler does not see).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Optional

import torch
from torch.profiler import ProfilerActivity, profile

if __package__ in (None, ""):  # run as a script (python bench/profile_step.py): find the project
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, machine_line, markdown_table, setup
from bench.train_step import (
    Shape,
    add_contender_arguments,
    add_shape_arguments,
    build_contenders,
    make_step,
)

# operator class -> substrings of the profiler's op names (the first match wins; the rest is "other")
CLASSES = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm"),
    "attention kernel": ("scaled_dot_product",),
    "softmax + CE": ("log_softmax", "nll_loss", "aten::_softmax", "softmax_backward"),
    "AdamW": ("adamw", "_foreach"),
    "fill/copy": ("aten::fill_", "aten::zero_", "aten::copy_", "aten::clone", "aten::contiguous"),
}


def op_class(name: str) -> str:
    for cls, keys in CLASSES.items():
        if any(k in name for k in keys):
            return cls
    return "other"


def profile_steps(step, steps: int) -> tuple[dict[str, float], collections.Counter]:
    """Milliseconds per step by operator class, and the "other" ops' milliseconds by name."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    by_class: dict[str, float] = collections.defaultdict(float)
    other: collections.Counter = collections.Counter()
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / steps / 1e3
        cls = op_class(event.key)
        by_class[cls] += ms
        if cls == "other":
            other[event.key.replace("aten::", "")] += ms
    return by_class, other


def run(args: argparse.Namespace) -> list[list[str]]:
    device = setup("cpu", args.threads, args.seed, args.malloc)
    shape = Shape(args.n_layer, args.n_head, args.n_embd, args.block_size, args.batch_size, args.vocab_size)
    data = torch.randint(0, shape.vocab_size, (shape.batch_size, shape.block_size + 1), device=device)
    idx, targets = data[:, :-1], data[:, 1:]  # (B, T) inputs and next-token targets
    rows = []
    for contender in build_contenders(shape, args.encodings, peers=not args.no_peers):
        step = make_step(contender, idx, targets, torch.float32, fused=True, compile=False)
        for _ in range(args.warmup):
            step()
        by_class, other = profile_steps(step, args.steps)
        top = ", ".join(f"{name} {ms:.0f}" for name, ms in other.most_common(3))
        rows.append(
            [contender.name, f"{sum(by_class.values()):.0f}", *(f"{by_class[c]:.0f}" for c in CLASSES),
             f"{by_class['other']:.0f}", top]
        )
        del step, contender
    print(f"\n{command_line()}\n{machine_line(device)}")
    print(
        f"shape: n_layer {args.n_layer}, n_head {args.n_head}, n_embd {args.n_embd}, block {args.block_size}, "
        f"batch {args.batch_size}, vocab {args.vocab_size}; float32; self CPU ms per step over {args.steps} steps "
        f"after {args.warmup} warmup; malloc {args.malloc}\n"
    )
    print(markdown_table(["model", "total ms", *CLASSES, "other", "top other ops (ms)"], rows))
    return rows


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(p)
    p.add_argument("--steps", type=int, default=3, help="profiled steps per contender")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--malloc", choices=["default", "keep"], default="keep", help="as in bench/train_step.py")
    add_contender_arguments(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
