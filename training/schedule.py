"""Learning-rate schedule: linear warmup, then cosine decay to a floor.

The schedule is a pure function of the optimizer step, so the step stored in a checkpoint is its
whole state and a resumed run gets exactly the learning rates of an uninterrupted one.
"""

from __future__ import annotations

import math

from training.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based, the update about to be made).

    Warmup: lr * (step + 1) / warmup_steps for step < warmup_steps, so the first update is not 0.
    Then cosine from lr down to min_lr over the remaining steps:
    min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2, progress in [0, 1].
    Past max_steps it stays at min_lr.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.max_steps - cfg.warmup_steps
    if step >= cfg.max_steps or decay_steps <= 0:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / decay_steps
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
