"""The repeated-span probe: does the model use a copy of the text d tokens back?

For a span S of s tokens at flat position p of a document and a distance d >= s, the input is

    tokens[p - d : p]   (filler of d tokens: the text before S)
    tokens[p : p + s]   (S, first copy, at input positions d .. d + s - 1)
    tokens[p + s : p + d]   (filler of d - s tokens: the text after S)
    tokens[p : p + s]   (S again, second copy, at input positions 2d .. 2d + s - 1)

2d + s tokens in all, the two copies exactly d positions apart; everything but the second copy is
the document's own text, in order. The same spans (the same p) are used at every distance, and
every span and filler lies inside one document (p - d_max >= its start, p + d_max <= its end), so
none crosses a book's end. Scored are the s - 1 tokens after each copy's first (a copy's first
token follows unrelated filler and cannot be copied): per span, loss(first copy) - loss(second
copy) is the *gain* in nats. A model that attends back d tokens and copies (an induction head,
Olsson et al. 2022) predicts the second copy far better; without that reach the gain is ~0.

Usable context (`usable_context`): the largest tested distance d* such that at d* and at every
smaller tested distance the 95% confidence interval of the mean gain over spans lies above 0. The
gain disappears somewhere in [d*, next tested distance); "< d_min" when it is not significant at
the smallest distance, ">= d_max" when it is at every one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from evaluation.probes.forward import Forward, fits
from evaluation.probes.placement import spread_positions
from evaluation.probes.stats import mean_ci


@dataclass(frozen=True)
class RepeatInputs:
    """The probe's inputs for one distance: span i starts at flat position starts[i]."""

    distance: int
    span: int
    starts: np.ndarray  # (N,) int64

    @property
    def length(self) -> int:
        return 2 * self.distance + self.span

    @property
    def copies(self) -> tuple[int, int]:
        """Input positions of the first token of each copy."""
        return self.distance, 2 * self.distance

    def build(self, tokens: np.ndarray) -> np.ndarray:
        """(N, 2d + s) input token arrays."""
        d, s = self.distance, self.span
        text = np.asarray(tokens)[self.starts[:, None] + np.arange(-d, d)]  # (N, 2d): filler, S, filler
        return np.concatenate([text, text[:, d : d + s]], axis=1)  # (N, 2d + s)

    def scored(self) -> tuple[np.ndarray, np.ndarray]:
        """Input positions that predict the s - 1 scored tokens of the first and second copy
        (position q predicts token q + 1)."""
        c1, c2 = self.copies
        return np.arange(c1, c1 + self.span - 1), np.arange(c2, c2 + self.span - 1)


def distances_of(block_size: int, multipliers: list[float], span: int) -> list[int]:
    """round(m * L) per multiplier, sorted, distinct; each must be at least the span."""
    if span < 2:
        raise ValueError(f"eval.repeat.span must be >= 2 (its first token is not scored), got {span}")
    if not multipliers or any(m <= 0 for m in multipliers):
        raise ValueError(f"eval.repeat.distances must be positive multiples of L, got {list(multipliers)}")
    out = sorted({round(m * block_size) for m in multipliers})
    if out[0] < span:
        raise ValueError(f"eval.repeat.distances: {out[0]} tokens is less than the span ({span}); "
                         "the filler between the copies would be negative")
    return out


def plan_spans(docs: list[tuple[int, int]], reach: int, count: int) -> np.ndarray:
    """`count` span starts p with [p - reach, p + reach) inside one document, spread evenly."""
    if count < 2:
        raise ValueError(f"eval.repeat.spans must be >= 2 (a confidence interval needs two), got {count}")
    return spread_positions(docs, reach, reach, count, f"eval.repeat.spans (largest distance {reach})")


def copy_losses(forward: Forward, tokens: np.ndarray, inputs: RepeatInputs) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy of each span's first and second copy: two (N,) arrays."""
    x = inputs.build(tokens)
    first, second = inputs.scored()
    positions = np.concatenate([first, second])
    logp = forward.log_probs(x, positions)  # (N, 2 (s - 1), V)
    targets = torch.from_numpy(x[:, positions + 1].astype(np.int64))  # (N, 2 (s - 1))
    ce = -logp.gather(-1, targets[..., None])[..., 0].double().numpy()  # (N, 2 (s - 1))
    k = len(first)
    return ce[:, :k].mean(axis=1), ce[:, k:].mean(axis=1)


def usable_context(distances: list[int], lows: list[Optional[float]]) -> tuple[Optional[int], Optional[int]]:
    """(d*, next): d* the largest distance with a gain CI above 0 there and at every smaller
    distance (None: not even at the first), next the following tested distance (None: none)."""
    best = None
    for i, (d, low) in enumerate(zip(distances, lows)):
        if low is None or low <= 0:
            return best, d
        best = d
    return best, None


def repeat_rows(forward: Forward, model, tokens: np.ndarray, starts: np.ndarray, distances: list[int],
                span: int, on_length=None) -> list[dict]:
    """One row per distance: {"distance", "length", "loss_first", "loss_second", "gain",
    "gain_low", "gain_high", "gains" (per span), "note"}."""
    rows = []
    for d in distances:
        inputs = RepeatInputs(d, span, starts)
        row = {"distance": d, "length": inputs.length}
        if not fits(model, inputs.length):
            rows.append(row | {"note": f"n/a (table length {model.max_positions})"})
            continue
        if on_length is not None:
            on_length(inputs.length)
        first, second = copy_losses(forward, tokens, inputs)
        gains = first - second
        gain, low, high = mean_ci(gains)
        rows.append(row | {"loss_first": float(first.mean()), "loss_second": float(second.mean()),
                           "gain": gain, "gain_low": low, "gain_high": high, "gains": gains.tolist(),
                           "note": None})
    return rows
