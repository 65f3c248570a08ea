"""Test-wide environment: no wandb, no hub access."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
