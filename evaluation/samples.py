"""A few stories from a trained model: the same prompt and generator seed for every encoding."""

from __future__ import annotations

from dataclasses import asdict

import torch

from data.encode import get_tokenizer
from data.vocab import Vocab
from evaluation.config import SamplesConfig
from model.generate import generate
from training.checkpoint import load_model_and_vocab


@torch.no_grad()
def sample_stories(model, vocab: Vocab, cfg: SamplesConfig, device: torch.device) -> list[str]:
    """`cfg.num_samples` continuations of `cfg.prompt` (generated as one batch, KV-cached), each
    cut at its first end-of-text token and decoded through the model's vocabulary (the unknown id
    as UNK_MARKER). A learned table that fills up re-prefills its last block_size tokens
    (overflow="slide") instead of stopping."""
    enc = get_tokenizer(vocab.tokenizer)
    prompt = vocab.encode(enc, cfg.prompt) or [vocab.eot_id]
    idx = torch.tensor([prompt] * cfg.num_samples, dtype=torch.long, device=device)  # (B, T)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    model.eval()
    steps = list(generate(model, idx, cfg.max_new_tokens, cfg.temperature, cfg.top_k, None, generator,
                          stop_token=vocab.eot_id, overflow="slide"))
    new = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(cfg.num_samples)]  # (B, steps)
    stories = []
    for row in new:
        if vocab.eot_id in row:
            row = row[: row.index(vocab.eot_id)]
        stories.append(cfg.prompt + vocab.decode(enc, row))
    return stories


def samples_record(stories: list[str], cfg: SamplesConfig) -> dict:
    return {"config": asdict(cfg), "stories": stories}


def final_story(run_dir, max_new_tokens: int, device: torch.device) -> str:
    """One story sampled from `run_dir`'s best checkpoint with the report's settings (train.py
    prints it when a run ends)."""
    model, _, vocab = load_model_and_vocab(run_dir, device)
    (story,) = sample_stories(model, vocab, SamplesConfig(num_samples=1, max_new_tokens=max_new_tokens), device)
    return story
