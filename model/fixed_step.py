"""A one-token decode step with fixed shapes, so that it compiles to a single CUDA graph.

A plain cached step reads `k[:, :, :length]` and builds its positions from a Python int, so every
step has new shapes, and `torch.compile(mode="reduce-overhead")` would record a new graph per
length. This step attends over every slot of the preallocated cache with a mask (key position <=
query position) and takes its position as a device tensor, as gpt-fast and Hugging Face's
StaticCache do: one graph serves every position. It pays attention over the whole capacity
instead of the filled part, which is small next to the per-kernel launch overhead it removes.

`compiled_decode_step` keeps one compiled step (with its cache) per model, batch size and
capacity, so repeated `generate` calls replay the same graph instead of compiling again.
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

from model.kv_cache import KVCache
from model.positional import Positions


class FixedDecodeStep:
    """`step(token)`: token (B, 1) at position `cache.length` -> next-token logits (B, V);
    advances the cache by one."""

    def __init__(self, model, cache: KVCache):
        self.model, self.cache = model, cache
        self.position = torch.zeros(1, dtype=torch.long, device=cache.k.device)  # (1,) the slot to write
        self._run = self._step
        self._marks_cuda_graph_steps = False

    def compile(self, **options) -> None:
        """torch.compile the step (one graph: fullgraph, static shapes). The cache tensors keep
        their addresses, so a CUDA graph updates them in place instead of copying them."""
        torch._dynamo.mark_static_address(self.cache.k)
        torch._dynamo.mark_static_address(self.cache.v)
        self._run = torch.compile(self._step, fullgraph=True, dynamic=False, **options)
        self._marks_cuda_graph_steps = options.get("mode") in ("reduce-overhead", "max-autotune")

    def __call__(self, token: Tensor) -> Tensor:
        self.cache.check_room(1)
        self.model.check_cache_reusable(self.cache.length + 1, self.cache.length)
        self.position.fill_(self.cache.length)
        if self._marks_cuda_graph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        logits = self._run(token, self.position).clone()  # a CUDA graph reuses its output buffer
        self.cache.advance(1)
        return logits

    def _step(self, token: Tensor, position: Tensor) -> Tensor:
        x = self.model.hidden(token, self.cache, Positions.fixed(position, self.cache.max_len))
        return self.model.lm_head(x[:, -1])  # (B, C) -> (B, V)


_COMPILED: "weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, FixedDecodeStep]]" = weakref.WeakKeyDictionary()


def compiled_decode_step(model, batch_size: int, capacity: int) -> FixedDecodeStep:
    """The compiled fixed-shape decode step of `model` for this batch size and cache capacity,
    with an empty cache of its own: CUDA graphs (mode "reduce-overhead") on CUDA, inductor's
    default mode elsewhere. Built on first use and kept while the model lives, so that later
    calls replay the same graph; the graph reads the parameters in place, so training between
    calls is seen."""
    p = model.lm_head.weight
    key = (batch_size, capacity, p.device, p.dtype)
    steps = _COMPILED.setdefault(model, {})
    if key not in steps:
        step = FixedDecodeStep(model, KVCache.for_model(model, batch_size, capacity))
        step.compile(mode="reduce-overhead" if p.is_cuda else "default")
        steps[key] = step
    step = steps[key]
    step.cache.reset()
    return step
