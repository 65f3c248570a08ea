"""Test-wide environment: no wandb, no hub access."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, the real TinyStories text and the long books; skip where absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not present")
    return path


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
