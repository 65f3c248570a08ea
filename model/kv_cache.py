"""A preallocated key/value cache with an explicit length (cf. litgpt's KVCache, HF StaticCache).

Generation (`CachedDecoder`, `FixedDecodeStep`) owns it; training never sees one. Each layer writes the keys and values of the new
tokens at `length .. length + T` and reads `0 .. length + T`; the model advances `length` once
per forward, after every layer has written. A fixed-shape decode step (for CUDA graphs) instead
writes at a device-side position and reads every slot (see `update`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.positional.base import Positions


class KVCache:
    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0

    @classmethod
    def for_model(cls, model, batch_size: int, max_len: int) -> "KVCache":
        cfg = model.cfg
        p = next(model.parameters())
        return cls(cfg.n_layer, batch_size, cfg.n_head, max_len, cfg.n_embd // cfg.n_head, p.dtype, p.device)

    def check_room(self, new_tokens: int) -> None:
        if self.length + new_tokens > self.max_len:
            raise ValueError(
                f"KV cache full: {self.length} cached + {new_tokens} new tokens > max_len {self.max_len}"
            )

    def update(self, layer: int, k: Tensor, v: Tensor, positions: Positions) -> tuple[Tensor, Tensor]:
        """Write (B, H, T, D) keys/values of the new tokens; return all (B, H, length + T, D).

        A fixed step (`positions.is_fixed`) writes at its device-side positions and returns the
        whole cache (B, H, max_len, D), so its shapes never change (the mask hides the slots
        past the query); the caller advances `length`.
        """
        if positions.is_fixed:
            self.k[layer].index_copy_(2, positions.q, k)
            self.v[layer].index_copy_(2, positions.q, v)
            return self.k[layer], self.v[layer]
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, new_tokens: int) -> None:
        self.length += new_tokens

    def reset(self) -> None:
        self.length = 0
