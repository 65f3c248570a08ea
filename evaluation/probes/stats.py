"""Means with a 95% confidence interval (Student's t over independent samples)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided 95% t-interval of the mean of `values` (at least two;
    with zero spread the interval is the mean itself)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        raise ValueError(f"a confidence interval needs at least 2 samples, got {len(x)}")
    mean = float(x.mean())
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half
