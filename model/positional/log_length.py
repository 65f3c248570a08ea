"""Log-length attention scaling, an inference-time variant of every encoding (not an encoding).

Chiang and Cholak 2022 ("Overcoming a Theoretical Limitation of Self-Attention", Sec. 5) multiply
the attention logits by log n so that attention stays as sharp when n grows; Wang et al. 2024
("Length Generalization of Causal Transformers without Position Encoding") use it to extend NoPE.
Relative to a model trained at length L the scale is

    s(n) = max(1, log n / log L),   n = query position + 1 (1-based: the keys it attends to)

so every query inside the training length (n <= L) is unchanged and the trained model is the
variant at factor 1. It multiplies the query-key logits q.k / sqrt(d) (the query is scaled, which
every attention backend and the KV cache see alike); an additive positional bias (ALiBi, T5, ...)
is added unscaled.

Every model offers the variants `model_variants(pos)`: its encoding's own (RoPE's scalings, the
first being the trained model) or `TRAINED` when it has none, then `LOG_LENGTH`.
"""

from __future__ import annotations

import math

from torch import Tensor

TRAINED = "none"  # the trained model, no inference-time change (RoPE's first variant has this name)
LOG_LENGTH = "logn"


def model_variants(own: tuple[str, ...]) -> tuple[str, ...]:
    """The variants of a model whose encoding declares `own`: those (or the trained model), then
    log-length scaling."""
    return (own or (TRAINED,)) + (LOG_LENGTH,)


def log_length_scale(q_positions: Tensor, train_len: int) -> Tensor:
    """(Tq,) float32: max(1, log(p + 1) / log L) for 0-based query positions p (device-side
    positions too, so a compiled fixed decode step keeps one graph)."""
    if train_len < 2:
        raise ValueError(f"log-length scaling needs a training length >= 2, got {train_len}")
    n = (q_positions + 1).float()
    return (n.log() / math.log(train_len)).clamp(min=1.0)
