"""Shared by the tests/test_train_*.py files: a tiny model, the committed sample corpus, and a way
to run train.py in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A model that trains in milliseconds per step on one CPU thread (GPT-2's 50257-token table still
# dominates: 1.6M embedding parameters).
TINY = [
    "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=32",
    "train.batch_size=2", "train.global_batch_size=4", "train.warmup_steps=2",
    "train.eval_batches=2", "train.progress=false", "train.device=cpu", "wandb.mode=disabled",
]


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> list[str]:
    """Overrides selecting the committed sample corpus, tokenized once into a temp folder."""
    from data.config import DataConfig
    from data.prepare import ensure_prepared

    cache = tmp_path_factory.mktemp("sample_tokens")
    ensure_prepared(DataConfig(name="tinystories_sample", train_files=["data/sample/train.txt"],
                               val_files=["data/sample/valid.txt"], cache_dir=str(cache), num_proc=1))
    return ["data=tinystories_sample", f"data.cache_dir={cache}", "data.num_proc=1"]


def subprocess_env() -> dict:
    """One thread per process: fast on a busy machine, and the same arithmetic in every run."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled",
                PYTHONPATH=str(ROOT))


def train_cmd(*overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *overrides]


def run_train(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """python train.py OVERRIDES; fails the test with the output when it fails."""
    proc = subprocess.run(train_cmd(*overrides), cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc
