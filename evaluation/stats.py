"""Intervals over training seeds: the Student t 95% confidence interval of a mean.

With n seeds the interval is mean ± t_{0.975, n-1} * s / sqrt(n), s the sample standard deviation
(ddof 1). The t quantile is found by bisection on the t distribution's CDF, integrated from its
density with Simpson's rule (no SciPy needed at run time; the tests check it against scipy.stats).
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import numpy as np

LEVEL = 0.95


def t_pdf(x: float, dof: int) -> float:
    """Density of Student's t with `dof` degrees of freedom."""
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_norm - (dof + 1) / 2 * math.log1p(x * x / dof))


def t_cdf(x: float, dof: int, intervals: int = 4096) -> float:
    """P(T <= x), x >= 0: 1/2 plus the density integrated over [0, x] (composite Simpson)."""
    h = x / intervals
    inner = sum((4 if i % 2 else 2) * t_pdf(i * h, dof) for i in range(1, intervals))
    return 0.5 + h / 3 * (t_pdf(0.0, dof) + inner + t_pdf(x, dof))


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, dof: int) -> float:
    """The x > 0 with P(T <= x) = p, for 1/2 < p < 1 (to ~1e-9)."""
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, dof) < p else (lo, mid)
    return (lo + hi) / 2


def half_width(values: list[float], level: float = LEVEL) -> Optional[float]:
    """Half the width of the two-sided `level` t interval of the mean of `values` (None for one value)."""
    n = len(values)
    if n < 2:
        return None
    sd = float(np.std(values, ddof=1))
    return t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
