"""KV-cached generation: one prefill over the prompt, then one-token decode steps."""

from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch import Tensor

from model.fixed_step import compiled_decode_step
from model.gpt import GPT
from model.kv_cache import KVCache


class ContextFull(Exception):
    """The learned position table is full and `overflow="stop"` was asked for."""


def sample_next(
    logits: Tensor,
    temperature: float,
    top_k: Optional[int],
    top_p: Optional[float],
    generator: Optional[torch.Generator],
) -> Tensor:
    """logits (B, V) -> next token ids (B,). temperature 0 is greedy decoding."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        # nucleus (Holtzman et al. 2020): the smallest set whose probability reaches top_p
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= top_p  # keeps the top token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocab order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def validate_sampling(temperature: float, top_k: Optional[int], top_p: Optional[float], overflow: str) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or null, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or null, got {top_p}")
    if overflow not in ("stop", "slide"):
        raise ValueError(f"overflow must be 'stop' or 'slide', got {overflow!r}")


class CachedDecoder:
    """Owns a KV cache and the tokens seen so far: `prefill` a prompt, then `step` one token at a
    time; both return the (B, V) logits of the next token.

    A step is one cached forward, except when the cache cannot be reused: a full learned table
    (overflow="stop" raises ContextFull, "slide" re-prefills the last `block_size` tokens, so each
    step past the table costs a full window, as uncached sampling does), or an encoding whose
    earlier positions change as the sequence grows (dynamic NTK past its original length), which
    re-prefills everything seen so far.

    With `compile`, one-token steps run the model's compiled fixed-shape step (CUDA graphs on
    CUDA, see model/fixed_step.py); prefills and re-prefills stay eager.
    """

    def __init__(self, model: GPT, batch_size: int, max_len: int, overflow: str = "stop", compile: bool = False):
        self.model, self.overflow, self.limit = model, overflow, model.max_positions
        capacity = max_len if self.limit is None else min(max_len, self.limit)
        self.fixed_step = compiled_decode_step(model, batch_size, capacity) if compile else None
        self.cache = self.fixed_step.cache if compile else KVCache.for_model(model, batch_size, capacity)
        self.tokens: Optional[Tensor] = None  # (B, T) everything seen so far
        # On CPU, F.linear(x, W) with the (V, C) row-major head runs V short dot products per row;
        # x @ a contiguous (C, V) copy streams the table instead: 1.4-1.9x faster decode steps at
        # the tiny width (bench/RESULTS.md). The weights are frozen while sampling.
        weight = model.lm_head.weight
        self._head_t = weight.detach().t().contiguous() if weight.device.type == "cpu" else None

    @torch.inference_mode()
    def prefill(self, idx: Tensor) -> Tensor:
        self.tokens = idx
        window = idx if self.limit is None else idx[:, -self.limit :]
        return self._forward(window, reset=True)

    @torch.inference_mode()
    def step(self, token: Tensor) -> Tensor:
        self.tokens = torch.cat((self.tokens, token[:, None]), dim=1)
        total = self.cache.length + 1
        if self.limit is not None and total > self.limit:
            if self.overflow == "stop":
                raise ContextFull(
                    f"the learned position table is full ({self.limit} positions): generation "
                    "stopped; pass overflow=slide to keep going with a sliding window"
                )
            return self._forward(self.tokens[:, -self.limit :], reset=True)
        if self.model.pos.recompute_on_growth(total):
            return self._forward(self.tokens, reset=True)
        if self.fixed_step is not None:
            return self.fixed_step(token[:, None])
        return self._forward(token[:, None], reset=False)

    def _forward(self, idx: Tensor, reset: bool) -> Tensor:
        if reset:
            self.cache.reset()
        x = self.model.hidden(idx, cache=self.cache)[:, -1]  # (B, C)
        return x @ self._head_t if self._head_t is not None else self.model.lm_head(x)


def generate(
    model: GPT,
    idx: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    stop_token: Optional[int] = None,
    overflow: str = "stop",
    compile: bool = False,
) -> Iterator[Tensor]:
    """Yield (B,) new token ids, one step at a time, from a (B, T) prompt (see CachedDecoder).

    Stops after `max_new_tokens`, or once every row has produced `stop_token`. Bad options and
    a prompt too long for a learned table (with overflow="stop") raise ValueError here, before any
    work; a table that fills up during generation raises ContextFull from the iterator.
    `compile` runs the one-token steps as the model's compiled fixed-shape step (CUDA graphs on
    CUDA); the first call for a batch size and length compiles it.
    """
    validate_sampling(temperature, top_k, top_p, overflow)
    limit = model.max_positions
    if limit is not None and idx.shape[1] > limit and overflow == "stop":
        raise ValueError(
            f"the prompt has {idx.shape[1]} tokens but this model's learned position table holds "
            f"{limit}: shorten the prompt, or pass overflow=slide to keep its last {limit} tokens"
        )
    decoder = CachedDecoder(model, idx.shape[0], idx.shape[1] + max_new_tokens, overflow, compile)
    return _sample(decoder, idx, max_new_tokens, temperature, top_k, top_p, generator, stop_token)


def _sample(decoder, idx, max_new_tokens, temperature, top_k, top_p, generator, stop_token):
    logits = decoder.prefill(idx)
    finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    for step in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
        yield token
        if stop_token is not None:
            finished |= token == stop_token
            if bool(finished.all()):
                return
        if step < max_new_tokens - 1:
            logits = decoder.step(token)
