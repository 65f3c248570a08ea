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
    beta1: float = 0.9  # AdamW's first-moment decay
    beta2: float = 0.95  # AdamW's second-moment decay
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    eval_interval: int = 100  # evaluate validation loss every this many steps (and at the end)
    eval_batches: int = 20  # validation batches per evaluation (split over processes)
    log_interval: int = 10  # write a train event to metrics.jsonl / wandb every this many steps
    ckpt_interval: int = 100  # write ckpt_last.pt every this many steps (and at the end)
    patience: int = 0  # stop after this many evaluations without a better val loss; 0: never
    compile: bool = False  # torch.compile the model
    dtype: Dtype = Dtype.auto  # auto: bf16 autocast on CUDA (when supported), fp32 on CPU
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...
    peak_flops: float = 989e12  # accelerator peak for MFU (H100 SXM dense bf16)
    progress: bool = True  # tqdm progress bar on rank 0

    def __post_init__(self) -> None:
        """Reject values the loop cannot run with, naming the option (runs on OmegaConf.to_object)."""
        for name in ("batch_size", "global_batch_size", "max_steps", "eval_interval", "eval_batches",
                     "log_interval", "ckpt_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}={getattr(self, name)}: must be >= 1")
        for name in ("lr", "min_lr", "warmup_steps", "patience", "weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"train.{name}={getattr(self, name)}: must be >= 0")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"train.{name}={getattr(self, name)}: must be in [0, 1)")


class WandbMode(str, Enum):
    online = "online"  # falls back to offline when no API key is configured
    offline = "offline"  # writes <run dir>/wandb/offline-run-*, sync later with `wandb sync`
    disabled = "disabled"


@dataclass
class WandbConfig:
    """Weights & Biases logging. The environment variable WANDB_MODE=disabled (set in tests and
    CI) wins over `mode`."""

    mode: WandbMode = WandbMode.online  # online falls back to offline without an API key
    project: str = "pos-encodings"  # the W&B project
    name: Optional[str] = None  # None: "<encoding>-<layers>x<width>-<non-embedding params>"
    entity: Optional[str] = None  # the W&B team or user; None: your default
