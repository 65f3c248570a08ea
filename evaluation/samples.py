"""A few stories from a trained model: the same prompt and generator seed for every encoding."""

from __future__ import annotations

from dataclasses import asdict

import tiktoken
import torch

from evaluation.config import SamplesConfig
from model.generate import generate


@torch.no_grad()
def sample_stories(model, tokenizer: str, cfg: SamplesConfig, device: torch.device) -> list[str]:
    """`cfg.num_samples` continuations of `cfg.prompt` (generated as one batch, KV-cached), each
    cut at its first end-of-text token. A learned table that fills up re-prefills its last
    block_size tokens (overflow="slide") instead of stopping."""
    enc = tiktoken.get_encoding(tokenizer)
    prompt = enc.encode(cfg.prompt, allowed_special={"<|endoftext|>"}) or [enc.eot_token]
    idx = torch.tensor([prompt] * cfg.num_samples, dtype=torch.long, device=device)  # (B, T)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    model.eval()
    steps = list(generate(model, idx, cfg.max_new_tokens, cfg.temperature, cfg.top_k, None, generator,
                          stop_token=enc.eot_token, overflow="slide"))
    new = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(cfg.num_samples)]  # (B, steps)
    stories = []
    for row in new:
        if enc.eot_token in row:
            row = row[: row.index(enc.eot_token)]
        stories.append(cfg.prompt + enc.decode(row))
    return stories


def samples_record(stories: list[str], cfg: SamplesConfig) -> dict:
    return {"config": asdict(cfg), "stories": stories}
