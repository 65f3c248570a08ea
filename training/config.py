"""Typed configuration of the training loop and of experiment logging."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    batch_size: int = 16  # micro-batch per process
    max_steps: int = 1000
    lr: float = 1e-3
