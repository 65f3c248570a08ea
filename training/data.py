"""The training run's view of the data: prepared once, one global batch per step.

The global batch of step s is the same whatever the number of processes: micro-batch m of rank r
is global micro-batch g = r * grad_accum + m, drawn by `TrainBatches.get(s, g)` from a stream
seeded by (seed, s, g) alone. One process with 2 micro-steps and two processes with 1 therefore
see the same windows (for the same per-process batch_size), which is what makes a DDP run
comparable to a single-process one. The draw depends on nothing drawn before, so the loader's
position in a checkpoint is just the step (and the seed, checked on resume).
"""

from __future__ import annotations

from typing import Optional

import torch

from data.config import DataConfig, DataSource
from data.loader import TrainBatches, ValBatches, load_tokens, read_meta
from data.prepare import ensure_prepared
from data.vocab import Vocab
from training import distributed as dist_utils
from training.distributed import DistEnv


def _origin(cfg: DataConfig, split: str) -> str:
    """Which option chose a split's text, for errors."""
    if split == "val" and cfg.val_fraction > 0:
        return f"data.val_fraction={cfg.val_fraction} of the training text"
    if DataSource(cfg.source) is DataSource.hub:
        return f"hub dataset {cfg.hub_dataset}"
    option = "train_files" if split == "train" else "val_files"
    return f"data.{option}={list(getattr(cfg, option))}"


class TrainData:
    def __init__(self, data_cfg: DataConfig, block_size: int, batch_size: int, seed: int, env: DistEnv,
                 grad_accum: int, eval_batches: int):
        if env.is_main:  # one process tokenizes; the others wait, then read the same files
            folder = ensure_prepared(data_cfg)
        dist_utils.barrier(env)
        if not env.is_main:
            folder = ensure_prepared(data_cfg)  # up to date by now: only checks the fingerprint
        self.seed, self.rank, self.grad_accum = seed, env.rank, grad_accum
        self.vocab = Vocab.from_dict(read_meta(folder)["vocab"])  # the model's vocabulary follows it
        # one stream for every process, indexed by the global micro-batch
        self.train = TrainBatches(load_tokens(folder, "train"), batch_size, block_size, seed,
                                  device=env.device, what=f"training split ({_origin(data_cfg, 'train')})")
        self.val = ValBatches(load_tokens(folder, "val"), batch_size, block_size, max_batches=eval_batches,
                              device=env.device, what=f"validation split ({_origin(data_cfg, 'val')}) at "
                                                      f"model.block_size={block_size}")

    def train_batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """x, y (batch_size, block_size) of micro-step `micro` of optimizer step `step` (0-based),
        and their randomized positions (same shape; None with positions 0 .. block_size - 1)."""
        g = self.rank * self.grad_accum + micro
        return (*self.train.get(step, g), self.train.positions(step, g))

    def randomize_positions(self, position_range: Optional[int]) -> None:
        """Train on randomized positions from [0, position_range) (the model's
        `pos.randomize_to`), drawn with each batch; None: positions 0 .. block_size - 1."""
        self.train.randomize_positions(position_range)

    def val_batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.val.get(i)

    @property
    def num_val_batches(self) -> int:
        return len(self.val)

    def state_dict(self, step: int) -> dict:
        return {"seed": self.seed, "step": step}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"the checkpoint's train batches were drawn with seed={state['seed']}, "
                             f"this run has seed={self.seed}: resume with the same seed")
