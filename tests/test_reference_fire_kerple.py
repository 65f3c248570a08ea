"""FIRE and KERPLE against their papers' formulas, written out here entry by entry in Python's math
module: FIRE's f_theta(psi(i - j) / psi(max(L, i))) with psi(x) = log(c x + 1) and a 1 -> w -> H
ReLU MLP (Li et al. 2024), KERPLE's -r1 log(1 + r2 d) and -r1 d^r2 (Chi et al. 2022), and KERPLE's
parameter constraints as in the authors' code."""

from __future__ import annotations

import math

import pytest
import torch

from model.config import ModelConfig
from model.positional import Positions
from model.positional.fire import FIRE
from model.positional.kerple import KERPLE, Kernel

N_HEAD = 3
CFG = ModelConfig(n_layer=1, n_head=N_HEAD, n_embd=24, block_size=16, vocab_size=11)
POSITIONS = [(0, 40), (13, 6), (30, 1)]  # a full forward past L, a cached chunk, one decode step


def fire_reference(enc: FIRE, q_pos: list[int], k_pos: list[int]) -> torch.Tensor:
    """b[h][i][j] = W2[h] . relu(W1 u + b1) + b2[h], u = log(c (i - j) + 1) / log(c max(L, i) + 1),
    for the causal part i >= j (0 elsewhere, where the mask removes it)."""
    c, L = abs(enc.c.item()), max(enc.threshold.item(), 1.0)
    w1, b1 = enc.mlp[0].weight[:, 0].tolist(), enc.mlp[0].bias.tolist()
    w2, b2 = enc.mlp[2].weight.tolist(), enc.mlp[2].bias.tolist()

    def f(u: float) -> list[float]:
        hidden = [max(0.0, w * u + b) for w, b in zip(w1, b1)]
        return [sum(a * z for a, z in zip(w2[h], hidden)) + b2[h] for h in range(N_HEAD)]

    out = [[[0.0] * len(k_pos) for _ in q_pos] for _ in range(N_HEAD)]
    for a, i in enumerate(q_pos):
        for b, j in enumerate(k_pos):
            if j > i:
                continue
            u = math.log(c * (i - j) + 1) / math.log(c * max(L, i) + 1)
            for h, value in enumerate(f(u)):
                out[h][a][b] = value
    return torch.tensor(out)


def causal(positions: Positions) -> torch.Tensor:
    return positions.k[None, :] <= positions.q[:, None]  # (Tq, Tk)


@pytest.mark.parametrize("start,length", POSITIONS)
@pytest.mark.parametrize("init_c,threshold", [(0.1, None), (2.0, 5.0)])
def test_fire_bias_equals_the_papers_formula(start, length, init_c, threshold):
    torch.manual_seed(0)
    enc = FIRE(CFG, FIRE.Config(init_c=init_c, init_threshold=threshold, mlp_width=8))
    for p in enc.mlp.parameters():
        torch.nn.init.normal_(p, std=1.0)
    positions = Positions.make(start, length, "cpu")
    with torch.no_grad():
        got = enc.bias(positions)
    want = fire_reference(enc, positions.q.tolist(), positions.k.tolist())
    visible = causal(positions)
    torch.testing.assert_close(got[:, visible], want[:, visible], atol=1e-5, rtol=1e-5)


def test_fire_learns_c_and_threshold_and_can_freeze_the_threshold():
    enc = FIRE(CFG, FIRE.Config(init_threshold=20.0))
    for p in enc.mlp.parameters():
        torch.nn.init.normal_(p, std=1.0)
    enc.bias(Positions.make(0, 40, "cpu")).square().sum().backward()  # queries below and above L_thr
    assert enc.c.grad.abs() > 0 and enc.threshold.grad.abs() > 0
    frozen = FIRE(CFG, FIRE.Config(learn_threshold=False))
    assert "threshold" not in dict(frozen.named_parameters()) and frozen.threshold.item() == CFG.block_size
    assert "threshold" in frozen.state_dict()
    with pytest.raises(ValueError, match="init_c"):
        FIRE(CFG, FIRE.Config(init_c=0.0))


def test_fire_progressive_interpolation_maps_every_query_into_the_unit_interval():
    """Past the threshold the farthest key of every query sits at u = 1: the MLP's input range of
    training is never left."""
    enc = FIRE(CFG, FIRE.Config())
    positions = Positions.make(0, 200, "cpu")
    with torch.no_grad():
        u = enc.normalized_distance(positions)
    assert u.min() >= 0 and u.max() <= 1 + 1e-6
    torch.testing.assert_close(u[CFG.block_size:, 0], torch.ones(200 - CFG.block_size))


def kerple_reference(kernel: str, r1: list[float], r2: list[float], q_pos, k_pos) -> torch.Tensor:
    def value(h: int, d: int) -> float:
        if kernel == "log":
            return -r1[h] * math.log(1 + r2[h] * d)
        return -r1[h] * d ** r2[h] if d > 0 else 0.0

    return torch.tensor([[[value(h, i - j) if j <= i else 0.0 for j in k_pos] for i in q_pos] for h in range(N_HEAD)])


@pytest.mark.parametrize("start,length", POSITIONS)
@pytest.mark.parametrize("kernel", ["log", "power"])
def test_kerple_bias_equals_the_papers_kernels(kernel, start, length):
    torch.manual_seed(0)
    enc = KERPLE(CFG, KERPLE.Config(kernel=Kernel(kernel)))
    positions = Positions.make(start, length, "cpu")
    with torch.no_grad():
        got = enc.bias(positions)
    want = kerple_reference(kernel, enc.r1.tolist(), enc.r2.tolist(), positions.q.tolist(), positions.k.tolist())
    visible = causal(positions)
    torch.testing.assert_close(got[:, visible], want[:, visible], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,r2_range", [("log", (0.0, 1.0)), ("power", (0.0, 2.0))])
def test_kerple_initialisation_as_the_authors(kernel, r2_range):
    torch.manual_seed(0)
    enc = KERPLE(ModelConfig(n_head=64, n_embd=128), KERPLE.Config(kernel=Kernel(kernel)))
    r1_max = 2.0 if kernel == "log" else 1.0
    assert 0 < enc.r1.min() and enc.r1.max() < r1_max and enc.r1.max() > 0.8 * r1_max
    assert r2_range[0] < enc.r2.min() and enc.r2.max() < r2_range[1] and enc.r2.max() > 0.8 * r2_range[1]


@pytest.mark.parametrize("kernel,r2_max", [("log", math.inf), ("power", 2.0)])
def test_kerple_constraints_project_in_training_and_clamp_in_eval(kernel, r2_max):
    enc = KERPLE(CFG, KERPLE.Config(kernel=Kernel(kernel)))
    positions = Positions.make(0, 8, "cpu")
    with torch.no_grad():
        enc.r1.copy_(torch.tensor([-1.0, 0.005, 0.5]))
        enc.r2.copy_(torch.tensor([-3.0, 5.0, 0.5]))
    enc.eval()
    with torch.no_grad():
        clamped = enc.bias(positions)
    assert enc.r1[0].item() == -1.0  # evaluation reads a clamped copy, the parameters stay
    r1 = [0.01, 0.01, 0.5]
    r2 = [0.01, min(5.0, r2_max), 0.5]
    want = kerple_reference(kernel, r1, r2, positions.q.tolist(), positions.k.tolist())
    visible = causal(positions)
    torch.testing.assert_close(clamped[:, visible], want[:, visible], atol=1e-6, rtol=1e-5)
    enc.train()
    trained = enc.bias(positions)  # training projects the parameters themselves, as the authors do
    assert enc.r1.tolist() == pytest.approx(r1) and enc.r2.tolist() == pytest.approx(r2)
    torch.testing.assert_close(trained.detach(), clamped)
    trained.sum().backward()
    assert enc.r1.grad.abs().min() > 0  # every head learns, at the bound too
    assert torch.isfinite(enc.r2.grad).all()  # d/dp of 0^p at distance 0 (and the masked part)
