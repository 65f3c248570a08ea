"""Causal self-attention and its backends.

Backends (all equal to softmax(QK^T / sqrt(d) + bias + mask) V, tested against that formula):
- SDPA with `is_causal=True`: no bias and no cached keys (the flash kernel on CUDA);
- SDPA with no mask: a one-token decode step without bias (every cached key is visible);
- SDPA with an additive float mask: bias encodings, cached steps with several new tokens, and
  fixed-shape decode steps over the whole cache. `is_causal` is aligned to the upper left, which is
  wrong once Tq != Tk, so the mask is built from absolute positions (key position <= query position);
- FlexAttention: bias encodings on CUDA without a cache; the bias becomes a `score_mod` and the
  causal mask a block mask, so no (T, T) tensor is materialised;
- explicit scores (softmax of a materialised (B, H, Tq, Tk) score tensor): content-aware
  encodings (`needs_scores`), whose bias is a function of the scores themselves, and every layer
  while an attention recorder is set (`record_attention`), which receives the (B, H, Tq, Tk)
  probabilities.

Log-length scaling (the `logn` variant, model/positional/log_length.py) multiplies the queries by
their per-position scale before any backend runs, so every backend and the KV cache see it.

Which backend runs is decided here (`use_flex`, `CausalSelfAttention.forward`) from the
encoding's declared capabilities, never from its name.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import AttnBackend, ModelConfig
from model.kv_cache import KVCache
from model.positional import PositionalEncoding, Positions, Rotation
from model.positional.base import GradHook, ScoreMod
from model.positional.log_length import log_length_scale


def use_flex(pos: PositionalEncoding, cfg: ModelConfig, on_cuda: bool, cached: bool, training: bool) -> bool:
    """The backend policy: FlexAttention for an encoding whose bias has a `score_mod`, on CUDA,
    without a cache and without attention dropout (`attn_backend=auto`); forced by `flex`."""
    backend = AttnBackend(cfg.attn_backend)
    dropout = training and cfg.dropout > 0
    if backend == AttnBackend.flex:
        if not pos.has_score_mod or cached:
            return False  # nothing to express as a score_mod, or a cached decode step
        if dropout:
            raise ValueError("attn_backend=flex has no attention dropout: set model.dropout=0")
        if not on_cuda and torch.is_grad_enabled():
            raise ValueError("FlexAttention has no backward on CPU: use model.attn_backend=sdpa")
        return True
    return backend == AttnBackend.auto and pos.has_score_mod and on_cuda and not cached and not dropout


class AttentionInputs:
    """What every layer's attention needs from the positional encoding, built once per forward."""

    def __init__(self, pos: PositionalEncoding, positions: Positions, flex: bool, log_length: Optional[int] = None):
        self.pos, self.positions = pos, positions
        # (Tq,) log-length scaling of the queries (log_length.py), None when off
        self.q_scale: Optional[Tensor] = None if log_length is None else log_length_scale(positions.q, log_length)
        self.rotation: Optional[Rotation] = pos.rotation(positions)
        self.score_mod: Optional[ScoreMod] = pos.score_mod(positions) if flex else None
        self.score_mod_grad: Optional[GradHook] = pos.score_mod_grad(positions) if flex else None
        self.bias: Optional[Tensor] = None if flex else pos.bias(positions)
        self.needs_scores = pos.needs_scores


def causal_float_mask(positions: Positions, dtype: torch.dtype) -> Tensor:
    """(Tq, Tk) additive mask: 0 where key position <= query position, -inf elsewhere."""
    visible = positions.k[None, :] <= positions.q[:, None]
    mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return mask.masked_fill(~visible, float("-inf"))


@lru_cache(maxsize=None)
def _flex_attention(compiled: bool):
    """FlexAttention needs torch.compile for its fused kernel (CUDA); eager runs the math (CPU)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False) if compiled else flex_attention


@lru_cache(maxsize=32)
def _causal_block_mask(q_len: int, kv_len: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    return create_block_mask(causal, B=None, H=None, Q_LEN=q_len, KV_LEN=kv_len, device=device)


def flex_attend(q: Tensor, k: Tensor, v: Tensor, score_mod: ScoreMod) -> tuple[Tensor, Tensor]:
    """FlexAttention over (B, H, T, D) inputs with a causal block mask (no cache).
    Returns the output and each query's log-sum-exp of scores (B, H, T)."""
    from torch.nn.attention.flex_attention import AuxRequest

    block_mask = _causal_block_mask(q.shape[2], k.shape[2], str(q.device))
    flex = _flex_attention(compiled=q.is_cuda)
    # num_stages=2: a captured tensor in score_mod can exceed shared memory with the default
    # configs ("No valid triton configs"), seen on an H100 with torch 2.11
    options = {"num_stages": 2} if q.is_cuda else None
    out, aux = flex(
        q, k, v, score_mod=score_mod, block_mask=block_mask, kernel_options=options,
        return_aux=AuxRequest(lse=True),
    )
    return out, aux.lse


def sdpa_attend(q: Tensor, k: Tensor, v: Tensor, inp: AttentionInputs, dropout_p: float) -> Tensor:
    """scaled_dot_product_attention with the cheapest correct masking for this call."""
    pos = inp.positions
    if inp.bias is None and pos.start == 0:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if inp.bias is None and pos.length == 1 and not pos.is_fixed:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    mask = causal_float_mask(pos, q.dtype)
    if inp.bias is not None:
        mask = inp.bias.to(q.dtype) + mask  # (H, Tq, Tk)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


AttentionRecorder = Callable[[int, Tensor, Positions], None]  # (layer, (B, H, Tq, Tk) probabilities, positions)


def explicit_attend(q: Tensor, k: Tensor, v: Tensor, inp: AttentionInputs, layer: int, dropout_p: float,
                    recorder: Optional[AttentionRecorder] = None) -> Tensor:
    """softmax(QK^T / sqrt(d) + bias + score_bias(scores) + causal mask) V with the scores
    materialised: for encodings whose bias reads the scores (`needs_scores`), and for a `recorder`,
    which sees the probabilities (before dropout)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    logits = scores + causal_float_mask(inp.positions, scores.dtype)
    bias = inp.bias if inp.bias is not None else inp.pos.bias(inp.positions)  # flex leaves inp.bias unset
    if bias is not None:
        logits = logits + bias.to(scores.dtype)
    extra = inp.pos.score_bias(q, scores, inp.positions, layer)
    if extra is not None:
        logits = logits + extra.to(scores.dtype)
    probs = torch.softmax(logits.float(), dim=-1)
    if recorder is not None:
        recorder(layer, probs, inp.positions)
    return F.dropout(probs, dropout_p).to(v.dtype) @ v


@contextmanager
def record_attention(model: nn.Module, recorder: AttentionRecorder) -> Iterator[None]:
    """Within the block, every attention layer of `model` takes the explicit path and hands its
    probabilities to `recorder`."""
    layers = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    for m in layers:
        m.recorder = recorder
    try:
        yield
    finally:
        for m in layers:
            m.recorder = None


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd ({cfg.n_embd}) must be divisible by n_head ({cfg.n_head})")
        self.n_head, self.n_embd, self.dropout = cfg.n_head, cfg.n_embd, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.recorder: Optional[AttentionRecorder] = None  # set by record_attention

    def forward(self, x: Tensor, inp: AttentionInputs, cache: Optional[KVCache], layer: int) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, T, H, D) -> (B, H, T, D)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if inp.rotation is not None:  # the cache keeps rotated keys
            q, k = inp.rotation.new(q), inp.rotation.new_keys(k)
        if inp.q_scale is not None:  # log-length scaling: every backend, and the cache, see it
            q = q * inp.q_scale[:, None].to(q.dtype)
        if cache is not None:
            k, v = cache.update(layer, k, v, inp.positions)  # (B, H, Tk, D)
        dropout_p = self.dropout if self.training else 0.0
        if self.recorder is not None or inp.needs_scores:
            y = explicit_attend(q, k, v, inp, layer, dropout_p, self.recorder)
        elif inp.score_mod is not None:
            y, lse = flex_attend(q, k, v, inp.score_mod)
            if inp.score_mod_grad is not None:
                y = inp.score_mod_grad(y, q, k, v, lse)
        else:
            y = sdpa_attend(q, k, v, inp, dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, H, T, D) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))
