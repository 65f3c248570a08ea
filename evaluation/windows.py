"""Which windows each protocol runs, and which of their tokens it scores: pure index arithmetic.

Coordinates are offsets into one flat token array that holds every document of an eval set. A
document occupies [start, end); its target positions are start + 1 .. end - 1 (the first token
has nothing to be predicted from). A window of length L starting at w feeds tokens [w, w + L) and
predicts the targets w + 1 .. w + L; window position p predicts target w + 1 + p from p + 1 tokens.

The same tokens at every length: the targets are cut into chunks of C = lcm(lengths) tokens that
never cross a document's end, and the chosen chunks are scored at every length, in both protocols.
Every length divides C, so the non-overlapping windows of each length tile a chunk exactly.

- Non-overlapping (`nonoverlap_windows`): a chunk is cut into C / L windows, each scoring all of its
  L targets; target j of a window sees j earlier tokens (L / 2 on average), none from the previous
  window.
- Sliding (`sliding_windows`): the chunk's targets are taken `stride` at a time; each group is
  scored by the window of L tokens that ends at its last target, so every scored token sees at
  least L - stride earlier tokens (fewer only within L of a document's start). stride 1 is the
  exact protocol (every token sees L tokens); stride L gives the non-overlapping windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windows:
    """W windows of one length: inputs tokens[start : start + length], scoring positions
    [score_from, score_to) of each (position p predicts token start + 1 + p)."""

    length: int
    starts: np.ndarray  # (W,) int64
    score_from: np.ndarray  # (W,) int64
    score_to: np.ndarray  # (W,) int64

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def scored_tokens(self) -> int:
        return int((self.score_to - self.score_from).sum())

    def scored_positions(self) -> np.ndarray:
        """The flat target positions every window scores, concatenated (for tests and checks)."""
        return np.concatenate(
            [np.arange(s + 1 + a, s + 1 + b) for s, a, b in zip(self.starts, self.score_from, self.score_to)]
        ) if len(self) else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Chunks:
    """The scored targets of an eval set: chunk i holds targets [first[i], first[i] + size) of the
    document that starts at doc_start[i]."""

    size: int
    first: np.ndarray  # (K,) int64: flat position of the chunk's first target
    doc_start: np.ndarray  # (K,) int64: flat position of its document's first token
    available: int  # how many whole chunks the set holds (K of them are used)

    @property
    def scored_tokens(self) -> int:
        return len(self.first) * self.size


def chunk_size(lengths: list[int]) -> int:
    """The least common multiple of the eval lengths: every length tiles a chunk exactly."""
    return math.lcm(*lengths)


def plan_chunks(docs: list[tuple[int, int]], size: int, max_tokens: int | None) -> Chunks:
    """Chunks of `size` targets inside the documents [start, end), at most `max_tokens // size` of
    them, spread evenly over the set in document order (all of them when max_tokens is None)."""
    firsts, doc_starts = [], []
    for start, end in docs:
        n = (end - start - 1) // size  # whole chunks among this document's end - start - 1 targets
        firsts.append(start + 1 + size * np.arange(n, dtype=np.int64))
        doc_starts.append(np.full(n, start, dtype=np.int64))
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    doc_start = np.concatenate(doc_starts) if doc_starts else np.zeros(0, dtype=np.int64)
    total = len(first)
    keep = total if max_tokens is None else min(total, max_tokens // size)
    # Evenly spaced distinct indices (floor keeps them distinct), as data.loader.ValBatches does.
    pick = np.floor(np.linspace(0, total - 1, keep)).astype(np.int64) if keep else np.zeros(0, np.int64)
    return Chunks(size=size, first=first[pick], doc_start=doc_start[pick], available=total)


def nonoverlap_windows(chunks: Chunks, length: int) -> Windows:
    """C / L windows per chunk, back to back, each scoring all L of its targets."""
    if chunks.size % length:
        raise ValueError(f"length {length} does not divide the chunk size {chunks.size}")
    offsets = length * np.arange(chunks.size // length, dtype=np.int64)
    starts = ((chunks.first - 1)[:, None] + offsets[None, :]).reshape(-1)  # (K * C / L,)
    return Windows(
        length=length,
        starts=starts,
        score_from=np.zeros(len(starts), dtype=np.int64),
        score_to=np.full(len(starts), length, dtype=np.int64),
    )


def sliding_windows(chunks: Chunks, length: int, stride: int) -> Windows:
    """One window per group of `stride` consecutive targets of a chunk (the last group may be
    shorter); the window ends at the group's last target, or starts at the document's first token
    when it would begin before it. `stride` is capped at `length`."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    stride = min(stride, length)
    group = np.arange(0, chunks.size, stride, dtype=np.int64)  # group offsets inside a chunk
    t0 = (chunks.first[:, None] + group[None, :]).reshape(-1)  # first target of each group
    t1 = np.minimum(t0 + stride, np.repeat(chunks.first + chunks.size, len(group)))  # one past its last
    doc_start = np.repeat(chunks.doc_start, len(group))
    starts = np.maximum(doc_start, t1 - 1 - length)  # window predicts targets starts+1 .. starts+length
    return Windows(length=length, starts=starts, score_from=t0 - starts - 1, score_to=t1 - starts - 1)
