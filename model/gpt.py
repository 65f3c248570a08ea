"""A decoder-only GPT (pre-LayerNorm blocks, GELU MLP, tied embedding and head) whose positional
encoding is one shared module chosen by config."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.attention import AttentionInputs, CausalSelfAttention
from model.config import AttnBackend, ModelConfig, PosConfig, RopeScaling
from model.fixed_step import FixedDecodeStep
from model.kv_cache import KVCache
from model.positional import Positions, build_positional
from model.positional.rotary import RotaryPositions


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, inp: AttentionInputs, cache: Optional[KVCache], layer: int) -> Tensor:
        x = x + self.attn(self.ln_1(x), inp, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, pos_cfg: PosConfig):
        super().__init__()
        for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(cfg, name)}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
        if cfg.n_embd % cfg.n_head:  # before the encoding, whose checks assume a whole head size
            raise ValueError(f"model.n_embd={cfg.n_embd} must be divisible by n_head (model.n_head={cfg.n_head})")
        self.cfg, self.pos_cfg = cfg, pos_cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos = build_positional(cfg, pos_cfg)  # one instance shared by every layer
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by 1/sqrt(2 L)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        token_std = self.pos.token_init_std()
        if token_std is not None:  # sinusoidal: tokens enter at the fixed table's scale
            nn.init.normal_(self.wte.weight, mean=0.0, std=token_std)
        self._compiled_steps: dict[tuple, FixedDecodeStep] = {}  # see compiled_decode_step

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def max_positions(self) -> Optional[int]:
        """Longest sequence the model can take (the learned table's length), or None."""
        return self.pos.max_positions

    def set_rope_scaling(self, scaling: RopeScaling) -> None:
        """Switch RoPE context extension at inference, without retraining."""
        if not isinstance(self.pos, RotaryPositions):
            raise ValueError(f"RoPE scaling needs pos=rope, this model uses pos={self.pos_cfg.name}")
        self.pos.set_scaling(scaling)

    def _use_flex(self, x: Tensor, cache: Optional[KVCache]) -> bool:
        backend = AttnBackend(self.cfg.attn_backend)
        is_bias = self.pos_cfg.name in ("t5", "alibi")
        if backend == AttnBackend.flex:
            if not is_bias or cache is not None:
                return False  # nothing to express as a score_mod, or a cached decode step
            if self.training and self.cfg.dropout > 0:
                raise ValueError("attn_backend=flex has no attention dropout: set model.dropout=0")
            if not x.is_cuda and torch.is_grad_enabled():
                raise ValueError("FlexAttention has no backward on CPU: use model.attn_backend=sdpa")
            return True
        auto = backend == AttnBackend.auto and is_bias and x.is_cuda and cache is None
        return auto and not (self.training and self.cfg.dropout > 0)

    def compiled_decode_step(self, batch_size: int, capacity: int) -> FixedDecodeStep:
        """The compiled fixed-shape decode step (model/fixed_step.py) for this batch size and
        cache capacity, with an empty cache of its own: CUDA graphs (mode "reduce-overhead") on
        CUDA, inductor's default mode elsewhere. Built on first use and kept, so that later calls
        replay the same graph; the graph reads the parameters in place, so training between
        calls is seen."""
        p = self.lm_head.weight
        key = (batch_size, capacity, p.device, p.dtype)
        if key not in self._compiled_steps:
            step = FixedDecodeStep(self, KVCache.for_model(self, batch_size, capacity))
            step.compile(mode="reduce-overhead" if p.is_cuda else "default")
            self._compiled_steps[key] = step
        step = self._compiled_steps[key]
        step.cache.reset()
        return step

    def forward(
        self,
        idx: Tensor,
        targets: Optional[Tensor] = None,
        cache: Optional[KVCache] = None,
        last_only: bool = False,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """idx (B, T) token ids -> logits (B, T, vocab) (or (B, 1, vocab) with `last_only`) and the
        mean cross-entropy over targets != -1 (None without targets).

        With a cache, the T new tokens sit at positions cache.length .. cache.length + T - 1.
        """
        x = self.hidden(idx, cache)
        if last_only:
            x = x[:, -1:, :]
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        return logits, loss

    def hidden(self, idx: Tensor, cache: Optional[KVCache] = None, positions: Optional[Positions] = None) -> Tensor:
        """idx (B, T) -> the final hidden states (B, T, C), after ln_f and before the head.

        `positions` defaults to the T tokens after the cache's (from 0 without a cache); a fixed
        decode step passes `Positions.fixed` and advances the cache itself.
        """
        B, T = idx.shape
        if positions is None:
            start = 0 if cache is None else cache.length
            if cache is not None:
                cache.check_room(T)
            positions = Positions.make(start, T, idx.device)  # built once, handed to every layer
        x = self.wte(idx) * self.pos.token_scale()
        pe = self.pos.embed(positions)
        if pe is not None:
            x = x + pe.to(x.dtype)
        x = self.drop(x)
        inp = AttentionInputs(self.pos, positions, use_flex=self._use_flex(idx, cache))
        for layer, block in enumerate(self.blocks):
            x = block(x, inp, cache, layer)
        if cache is not None and not positions.is_fixed:
            cache.advance(T)
        return self.ln_f(x)

    def param_counts(self) -> dict[str, int]:
        """Embedding (token table, and the learned position table) vs everything else; the tied
        head is counted once, in the token table."""
        total = sum(p.numel() for p in self.parameters())
        embedding = self.wte.weight.numel()
        if hasattr(self.pos, "wpe"):
            embedding += self.pos.wpe.weight.numel()
        return {"embedding": embedding, "non_embedding": total - embedding, "total": total}

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (Kaplan et al. 2020; PaLM App. B): 6 N for the matmuls, with N
        the non-embedding weights plus the tied head, and 12 L C T for attention scores and values."""
        counts = self.param_counts()
        n = counts["non_embedding"] + self.wte.weight.numel()
        cfg = self.cfg
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * seq_len
