"""Where the probes take their text from: positions spread evenly over an eval set's documents."""

from __future__ import annotations

import numpy as np


def spread_positions(docs: list[tuple[int, int]], before: int, after: int, count: int, what: str) -> np.ndarray:
    """`count` flat positions p, evenly spread in document order over those with
    [p - before, p + after) inside one document [start, end)."""
    ranges = [(a + before, b - after + 1) for a, b in docs if b - a >= before + after]  # valid p: [lo, hi)
    sizes = np.array([hi - lo for lo, hi in ranges], dtype=np.int64)
    total = int(sizes.sum())
    if total < count:
        longest = max((b - a for a, b in docs), default=0)
        raise ValueError(f"{what}: {count} asked for, but only {total} position(s) have {before} tokens "
                         f"before and {after} after them inside one document (the longest has {longest})")
    offsets = np.floor(np.linspace(0, total - 1, count)).astype(np.int64)  # into the valid positions
    ends = np.cumsum(sizes)
    which = np.searchsorted(ends, offsets, side="right")  # the range each offset falls in
    firsts = np.array([lo for lo, _ in ranges], dtype=np.int64)
    return firsts[which] + offsets - (ends - sizes)[which]
