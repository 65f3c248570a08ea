"""The banded T5 table gradient (FlexAttention fast path) equals autograd through plain math."""

import math

import pytest
import torch

from model.positional.t5 import t5_bucket
from model.positional.t5_table_grad import AttachTableGrad, band_table_grad, far_bucket_start


def test_far_bucket_start_is_where_buckets_saturate():
    start = far_bucket_start(32, 128)
    buckets = t5_bucket(torch.arange(400), 32, 128)
    assert (buckets[start:] == 31).all() and (buckets[:start] < 31).all()


@pytest.mark.parametrize("T,block,num_buckets,max_distance", [(300, 64, 32, 128), (50, 16, 8, 20), (40, 128, 32, 128)])
def test_band_gradient_equals_autograd(T, block, num_buckets, max_distance):
    g = torch.Generator().manual_seed(0)
    B, H, D = 2, 3, 8
    q, k, v, grad_out = (torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(4))
    table = torch.randn(num_buckets, H, generator=g, dtype=torch.float64, requires_grad=True)
    # reference: plain-math causal attention with the bias read from the table, autograd
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    bias = table[t5_bucket(distance, num_buckets, max_distance)].permute(2, 0, 1)  # (H, T, T)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D) + bias
    scores = scores.masked_fill(distance < 0, float("-inf"))
    out = torch.softmax(scores, -1) @ v
    (out * grad_out).sum().backward()
    lse = torch.logsumexp(scores, -1).detach()
    got = band_table_grad(q, k, v, out.detach(), grad_out, lse, table, max_distance, block=block)
    torch.testing.assert_close(got, table.grad, atol=1e-9, rtol=1e-7)
    assert got[-1].abs().sum() > 0 or T <= far_bucket_start(num_buckets, max_distance)


def test_table_gradient_traces_into_one_graph_with_its_backward():
    """Under torch.compile (train=gpu) the band gradient is part of the compiled backward: nothing
    data-dependent (finding the far bucket inside it was: one graph break per layer)."""
    g = torch.Generator().manual_seed(0)
    q, k, v, out = (torch.randn(1, 2, 40, 8, generator=g) for _ in range(4))
    lse = torch.randn(1, 2, 40, generator=g)
    far_start = far_bucket_start(32, 128)

    def table_grad(fn):
        table = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), requires_grad=True)
        (fn(out, table, q, k, v, lse) * out).sum().backward()
        return table.grad

    def attach(out, table, q, k, v, lse):
        return AttachTableGrad.apply(out, table, q, k, v, lse, 128, far_start)

    torch._dynamo.reset()
    compiled = torch.compile(attach, backend="aot_eager", fullgraph=True)  # fails on a graph break
    torch.testing.assert_close(table_grad(compiled), table_grad(attach))
