"""Batches of token windows from a prepared split: seeded random ones to train, fixed ones to validate.

    folder = ensure_prepared(cfg.data)                      # data/prepare.py
    train = TrainBatches(load_tokens(folder, "train"), batch_size=16, block_size=256,
                         seed=cfg.seed, device=device)
    x, y = train.get(step, micro_step)                      # (B, T) int64 each, y = x shifted by one
    for x, y in val_batches(load_tokens(folder, "val"), 16, 256, max_batches=20, device=device):
        ...

A window is `block_size + 1` consecutive tokens; x is its first `block_size`, y its last. Windows
cross story boundaries (the end-of-text token between stories is part of the stream), as in GPT-2
and nanoGPT. `block_size` is any length: the long-context evaluation asks for windows longer than
the training context.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from data.tokens import DataError, load_tokens, read_meta

__all__ = ["TrainBatches", "ValBatches", "val_batches", "count_windows", "load_tokens", "read_meta"]


def count_windows(num_tokens: int, block_size: int) -> int:
    """How many non-overlapping `block_size + 1` windows fit: consecutive windows share one token
    (the last target of one is the first input of the next), so every token but the first is
    predicted exactly once across them."""
    return max(0, (num_tokens - 1) // block_size)


def _check_fits(tokens: np.ndarray, block_size: int, what: str) -> None:
    if block_size < 1:
        raise DataError(f"block_size={block_size}: must be at least 1")
    if len(tokens) < block_size + 1:
        name = getattr(tokens, "filename", None) or "the token array"
        raise DataError(
            f"{what}: {name} has {len(tokens)} tokens, too few for one window of block_size + 1 = "
            f"{block_size + 1}; use a shorter block_size or a larger split"
        )


def _to_device(windows: np.ndarray, device: torch.device, split: bool = True):
    """(B, T + 1) uint16 windows -> x, y (B, T) int64 on `device` (pinned, non-blocking on CUDA);
    with split=False the (B, T) array itself, as int64."""
    buf = torch.from_numpy(windows.astype(np.int64))
    if device.type == "cuda":
        buf = buf.pin_memory().to(device, non_blocking=True)
    else:
        buf = buf.to(device)
    return (buf[:, :-1], buf[:, 1:]) if split else buf


def sorted_random_positions(rng: np.random.Generator, batch_size: int, length: int, position_range: int) -> np.ndarray:
    """(batch_size, length) int64: per row, a uniformly random subset of [0, position_range) in
    increasing order (the `length` smallest of `position_range` uniform keys)."""
    keys = rng.random((batch_size, position_range))
    picks = np.argpartition(keys, length - 1, axis=1)[:, :length]
    return np.sort(picks, axis=1)


class TrainBatches:
    """Random training windows whose draw depends only on (seed, step, micro_step).

    `get(step, micro_step)` builds a fresh generator from those numbers, so the batches do not
    depend on what was drawn before: a run resumed at step k sees exactly the batches the
    uninterrupted run saw (nothing to checkpoint but the seed). DDP ranks differ through the
    micro-step, which training/data.py numbers globally (rank r's micro-batch m is global
    micro-batch r * grad_accum + m), so the global batch does not depend on the number of
    processes. Window starts are uniform over every position where a whole window fits, so no
    window runs past the end. With randomized positions (`randomize_positions(N)`, then
    `positions`) each window sits at a sorted random subset of [0, N), drawn from the batch's own
    generator after its starts.

    tokens: a 1-D array of token ids, usually `load_tokens(folder, "train")` (a uint16 memmap).
    batch_size: windows per batch (per process, per micro-step).
    block_size: the input length T; each window reads T + 1 tokens.
    seed: the run's seed (>= 0).
    device: where the batches go; on CUDA through pinned memory with non-blocking copies.
    what: names the split in errors (e.g. the option that chose its files).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        block_size: int,
        seed: int,
        device: str | torch.device = "cpu",
        what: str = "training split",
    ):
        _check_fits(tokens, block_size, what)
        if seed < 0:
            raise DataError(f"seed={seed}: must be >= 0")
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.seed, self.device = seed, torch.device(device)
        self._offsets = np.arange(block_size + 1)
        self.position_range: Optional[int] = None

    def randomize_positions(self, position_range: Optional[int]) -> None:
        """From now on `positions` draws from [0, position_range) (N >= block_size); None: off."""
        if position_range is not None and position_range < self.block_size:
            raise DataError(f"position_range={position_range}: must be at least block_size={self.block_size}")
        self.position_range = position_range

    def _rng(self, step: int, micro_step: int) -> np.random.Generator:
        # The 0 was a per-rank entry, always 0 in use: kept so that earlier runs resume on their batches.
        return np.random.default_rng([self.seed, 0, step, micro_step])

    def _starts(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)

    def starts(self, step: int, micro_step: int = 0) -> np.ndarray:
        """The (batch_size,) window starts of one batch: what `get` reads, without reading it."""
        return self._starts(self._rng(step, micro_step))

    def positions(self, step: int, micro_step: int = 0) -> Optional[torch.Tensor]:
        """The (batch_size, block_size) int64 positions of the windows of `get(step, micro_step)`
        with a `position_range` (randomized positions), else None: the same generator as the
        starts, drawn after them, so they too depend on nothing but the batch's numbers."""
        if self.position_range is None:
            return None
        rng = self._rng(step, micro_step)
        self._starts(rng)  # the starts come first in this batch's stream
        drawn = sorted_random_positions(rng, self.batch_size, self.block_size, self.position_range)
        return _to_device(drawn, self.device, split=False)

    def get(self, step: int, micro_step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch of optimizer step `step` (micro-batch `micro_step` under gradient accumulation):
        x, y of shape (batch_size, block_size), int64; y[:, t] is the token after x[:, t]."""
        windows = self.tokens[self.starts(step, micro_step)[:, None] + self._offsets]  # (B, T + 1)
        return _to_device(np.asarray(windows), self.device)


class ValBatches:
    """Deterministic validation batches: non-overlapping windows in a fixed order.

    All `count_windows(len(tokens), block_size)` windows by default; with `max_batches`, the
    `max_batches * batch_size` windows spread evenly over the split (same every time), so a short
    evaluation still sees the whole split rather than its first stories. The last batch may be
    smaller than `batch_size`. Index with `get(i)` (e.g. round-robin over DDP ranks) or iterate.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        block_size: int,
        max_batches: int | None = None,
        device: str | torch.device = "cpu",
        what: str = "validation split",
    ):
        _check_fits(tokens, block_size, what)
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.device = torch.device(device)
        total = count_windows(len(tokens), block_size)
        keep = total if max_batches is None else min(total, max_batches * batch_size)
        # Evenly spaced, distinct window indices (all of them when keep == total; floor, not
        # round, keeps them distinct), times the window stride.
        self.starts = np.floor(np.linspace(0, total - 1, keep)).astype(np.int64) * block_size
        self._offsets = np.arange(block_size + 1)

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch i (0 <= i < len(self)): x, y of shape (<= batch_size, block_size), int64."""
        if not 0 <= i < len(self):
            raise IndexError(f"validation batch {i} out of range (0 .. {len(self) - 1})")
        starts = self.starts[i * self.batch_size : (i + 1) * self.batch_size]
        return _to_device(np.asarray(self.tokens[starts[:, None] + self._offsets]), self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return (self.get(i) for i in range(len(self)))


def val_batches(
    tokens: np.ndarray,
    batch_size: int,
    block_size: int,
    max_batches: int | None = None,
    device: str | torch.device = "cpu",
) -> ValBatches:
    """The deterministic validation batches of `tokens` (see ValBatches); iterate for (x, y)."""
    return ValBatches(tokens, batch_size, block_size, max_batches, device)
