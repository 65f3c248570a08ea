"""Training-step speed of our GPT at several CPU thread counts, interleaved in one process.

Each contender is the same model, batch and optimizer step run under `torch.set_num_threads(n)`;
the rounds rotate the order, so a change in the machine's load hits every thread count alike.
The 1-minute load average before and after is printed beside the table: on a shared machine it
decides the answer (see bench/RESULTS.md, "Threads").

    python bench/threads.py --threads 1 2 --reps 6
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import torch

if __package__ in (None, ""):  # run as a script (python bench/threads.py): find the project
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, machine_line, markdown_table, median, setup, spread, time_interleaved
from bench.train_step import VOCAB, Shape, add_shape_arguments, make_step, ours


def run(args: argparse.Namespace) -> list[list[object]]:
    device = setup("cpu", None, args.seed)
    shape = Shape(args.n_layer, args.n_head, args.n_embd, args.block_size, args.batch_size)
    gen = torch.Generator().manual_seed(args.seed)
    data = torch.randint(0, VOCAB, (shape.batch_size, shape.block_size + 1), generator=gen)
    step = make_step(ours(shape, args.encoding), data[:, :-1], data[:, 1:], torch.float32, False, False)

    def with_threads(n: int):
        def fn() -> None:
            torch.set_num_threads(n)
            step()
        return fn

    machine = machine_line(device)
    load_before = os.getloadavg()[0]
    timings = time_interleaved({f"{n}": with_threads(n) for n in args.threads}, args.reps, args.warmup, device)
    load_after = os.getloadavg()[0]
    tokens = shape.batch_size * shape.block_size
    rows = [[n, f"{1e3 * median(timings.wall[str(n)]):.0f}", spread(timings.wall[str(n)]),
             f"{tokens / median(timings.wall[str(n)]):,.0f}"] for n in args.threads]
    print(f"\n{command_line()}\n{machine}")
    print(f"shape: n_layer {shape.n_layer}, n_head {shape.n_head}, n_embd {shape.n_embd}, block "
          f"{shape.block_size}, batch {shape.batch_size}, vocab {VOCAB}, pos={args.encoding}; {args.reps} reps "
          f"after {args.warmup} warmup; load average {load_before:.2f} before, {load_after:.2f} after; "
          f"{os.cpu_count()} CPUs\n")
    print(markdown_table(["threads", "wall ms/step", "spread", "train tokens/s"], rows))
    return rows


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(p)
    p.add_argument("--encoding", default="rope")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
