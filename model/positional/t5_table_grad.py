"""The gradient of T5's bias table without scattered atomic adds (the FlexAttention fast path).

Read inside a FlexAttention `score_mod`, a learned table gets its gradient by atomic adds of
every (q, k) score gradient into a handful of addresses, which serialises the backward pass.
Instead, attention runs with the bias as a constant, and the table's gradient is rebuilt here
from a narrow band of distances:

    dS[q, k] = P[q, k] * (dO[q] . v[k] - dO[q] . O[q]),   P[q, k] = exp(s[q, k] - lse[q]),

and every row of dS sums to zero over its visible keys, so the far bucket (all distances
>= `far_start`, where T5's buckets saturate) gets minus the sum over the near band. Only
distances < far_start (113 for 32 buckets and max_distance 128) are recomputed, in blocks of
queries against their band of keys: a banded attention recompute of O(T * band * D) work with
batched matmuls, instead of O(T^2) atomics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from model.positional.t5 import t5_bucket


def far_bucket_start(num_buckets: int, max_distance: int) -> int:
    """The smallest distance that falls into the last bucket."""
    distance = torch.arange(max_distance + 1)
    return int((t5_bucket(distance, num_buckets, max_distance) == num_buckets - 1).nonzero()[0])


def band_table_grad(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    grad_out: Tensor,
    lse: Tensor,
    table: Tensor,
    max_distance: int,
    block: int = 128,
    far_start: int | None = None,
) -> Tensor:
    """Gradient of a causal attention's loss w.r.t. the (num_buckets, H) T5 table.

    q, k, v, out, grad_out: (B, H, T, D); lse: (B, H, T), the natural-log sum of exp of each
    query's scores (what FlexAttention returns); scores are q.k / sqrt(D) + table[bucket(q - k)].
    """
    num_buckets = table.shape[0]
    B, H, T, D = q.shape
    acc = torch.promote_types(q.dtype, torch.float32)  # accumulate in at least fp32
    if far_start is None:  # pass it in under torch.compile: finding it here is data-dependent
        far_start = far_bucket_start(num_buckets, max_distance)
    width = min(far_start, T)  # near distances 0 .. width - 1
    band_buckets = t5_bucket(torch.arange(width, device=q.device), num_buckets, max_distance)
    band_bias = table.detach().to(acc)[band_buckets].t()  # (H, width)

    n_blocks = math.ceil(T / block)
    pad_q = n_blocks * block - T
    # queries, their output gradients, and the log-sum-exp in blocks: (B, H, nb, block, ...)
    q_b, g_b = (F.pad(t.to(acc), (0, 0, 0, pad_q)).unflatten(2, (n_blocks, block)) for t in (q, grad_out))
    lse_b = F.pad(lse.to(acc), (0, pad_q)).unflatten(2, (n_blocks, block))  # (B, H, nb, block)
    delta = (grad_out.to(acc) * out.to(acc)).sum(-1)  # (B, H, T): dO . O per query
    delta_b = F.pad(delta, (0, pad_q)).unflatten(2, (n_blocks, block))
    # each query block sees keys from `width - 1` before its first query to its last query:
    # pad keys in front, then take overlapping windows (B, H, nb, block + width - 1, D)
    span = block + width - 1
    k_w, v_w = (
        F.pad(t.to(acc), (0, 0, width - 1, pad_q)).unfold(2, span, block).transpose(-1, -2) for t in (k, v)
    )
    # local query i (absolute nb * block + i) against local key j (absolute nb * block + j - width + 1)
    i = torch.arange(block, device=q.device)[:, None]
    j = torch.arange(span, device=q.device)[None, :]
    distance = i - j + width - 1  # (block, span)
    in_band = (distance >= 0) & (distance < width)
    starts = torch.arange(n_blocks, device=q.device)[:, None, None] * block
    valid = in_band & (starts + j - width + 1 >= 0) & (starts + i < T)  # (nb, block, span)
    # the band as index pairs, (block, width) each: local query i, distance d, local key i + width - 1 - d
    # (index tensors, not a boolean mask: indexing by a mask waits for the device to count it)
    band_i = torch.arange(block, device=q.device)[:, None].expand(block, width)
    band_d = torch.arange(width, device=q.device)[None, :].expand(block, width)
    band_j = band_i + width - 1 - band_d
    bias = torch.zeros(H, block, span, dtype=acc, device=q.device)
    bias[:, band_i, band_j] = band_bias[:, band_d]  # (H, block, width)

    scores = q_b @ k_w.transpose(-1, -2) / math.sqrt(D) + bias[:, None]  # (B, H, nb, block, span)
    probs = torch.exp(scores - lse_b[..., None])
    d_scores = probs * (g_b @ v_w.transpose(-1, -2) - delta_b[..., None])
    d_scores = (d_scores * valid).sum(dim=(0, 2))  # (H, block, span), summed over batch and blocks

    grad_by_distance = d_scores[:, band_i, band_j].sum(dim=1)  # (H, width): summed over the queries
    grad = torch.zeros(num_buckets, H, dtype=acc, device=q.device)
    grad.index_add_(0, band_buckets, grad_by_distance.t())
    if width < T:
        # rows of dS sum to zero: the far bucket gets minus everything the band received
        grad[num_buckets - 1] -= grad_by_distance.sum(dim=1)
    return grad.to(table.dtype)


class AttachTableGrad(torch.autograd.Function):
    """Identity on the attention output whose backward adds the T5 table's gradient."""

    @staticmethod
    def forward(ctx, out, table, q, k, v, lse, max_distance, far_start):
        ctx.save_for_backward(q, k, v, out, lse, table)
        ctx.max_distance, ctx.far_start = max_distance, far_start
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, table = ctx.saved_tensors
        grad_table = band_table_grad(q, k, v, out, grad_out, lse, table, ctx.max_distance,
                                     far_start=ctx.far_start)
        return grad_out, grad_table, None, None, None, None, None, None
