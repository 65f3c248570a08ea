"""Typed configuration of the training loop and of experiment logging."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class Dtype(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA (when supported), fp32 on CPU
    bf16 = "bf16"  # bf16 autocast (weights and optimizer state stay fp32)
    fp32 = "fp32"


@dataclass
class TrainConfig:
    """One optimizer step sees `global_batch_size` sequences of `model.block_size` tokens.

    Each process runs micro-batches of `batch_size`; the number of accumulation micro-steps is
    global_batch_size / (batch_size * world_size), so the global batch (and the loss curve) does
    not depend on how many processes share the work. It must divide exactly.
    """

    batch_size: int = 16  # micro-batch per process (sequences)
    global_batch_size: int = 64  # sequences per optimizer step, over all processes
    max_steps: int = 1000  # optimizer steps
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # floor of the cosine decay, reached at max_steps
    warmup_steps: int = 100  # linear warmup from 0 to lr
    weight_decay: float = 0.1  # applied only to weights of 2 or more dimensions
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    eval_interval: int = 100  # evaluate validation loss every this many steps (and at the end)
    eval_batches: int = 20  # validation batches per evaluation (split over processes)
    log_interval: int = 10  # write a train event to metrics.jsonl / wandb every this many steps
    ckpt_interval: int = 100  # write ckpt_last.pt every this many steps (and at the end)
    patience: int = 0  # stop after this many evaluations without a better val loss; 0: never
    compile: bool = False  # torch.compile the model
    dtype: Dtype = Dtype.auto
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...
    peak_flops: float = 989e12  # accelerator peak for MFU (H100 SXM dense bf16)
    progress: bool = True  # tqdm progress bar on rank 0


class WandbMode(str, Enum):
    online = "online"  # falls back to offline when no API key is configured
    offline = "offline"  # writes <run dir>/wandb/offline-run-*, sync later with `wandb sync`
    disabled = "disabled"


@dataclass
class WandbConfig:
    """Weights & Biases logging. The environment variable WANDB_MODE=disabled (set in tests and
    CI) wins over `mode`."""

    mode: WandbMode = WandbMode.online
    project: str = "pos-encodings"
    name: Optional[str] = None  # None: "<encoding>-<layers>x<width>-<non-embedding params>"
    entity: Optional[str] = None
