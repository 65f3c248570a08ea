"""The story train.py prints when a run ends: a quick look at what the best checkpoint learned."""

from __future__ import annotations

import torch

from evaluation.config import SamplesConfig
from evaluation.samples import sample_stories
from training.checkpoint import load_model_and_vocab


def final_story(run_dir, max_new_tokens: int, device: torch.device) -> str:
    """One story sampled from `run_dir`'s best checkpoint (the report's sampling settings)."""
    model, _, vocab = load_model_and_vocab(run_dir, device)
    cfg = SamplesConfig(num_samples=1, max_new_tokens=max_new_tokens)
    (story,) = sample_stories(model, vocab, cfg, device)
    return story
