"""Warmup + cosine learning rate, against values worked out by hand."""

import math

import pytest

from training.config import TrainConfig
from training.schedule import lr_at

CFG = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)


def test_linear_warmup_starts_above_zero_and_reaches_peak():
    assert lr_at(0, CFG) == pytest.approx(0.1)
    assert lr_at(4, CFG) == pytest.approx(0.5)
    assert lr_at(9, CFG) == pytest.approx(1.0)


def test_cosine_decay_to_floor():
    assert lr_at(10, CFG) == pytest.approx(1.0)  # start of the decay
    assert lr_at(60, CFG) == pytest.approx(0.55)  # halfway: min + (max - min) / 2
    assert lr_at(35, CFG) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at(110, CFG) == pytest.approx(0.1)
    assert lr_at(500, CFG) == pytest.approx(0.1)
    values = [lr_at(s, CFG) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_no_warmup_and_no_decay_window():
    assert lr_at(0, TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=4)) == pytest.approx(1.0)
    assert lr_at(5, TrainConfig(lr=1.0, min_lr=0.2, warmup_steps=5, max_steps=5)) == pytest.approx(0.2)
