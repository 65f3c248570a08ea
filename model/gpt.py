"""A decoder-only GPT (pre-LayerNorm blocks, GELU MLP, tied embedding and head) whose positional
encoding is one shared module chosen by config."""

from __future__ import annotations

import math
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from model.attention import AttentionInputs, CausalSelfAttention, use_flex
from model.config import ModelConfig, PosConfig
from model.kv_cache import KVCache
from model.positional import Positions, build_positional
from model.positional.log_length import LOG_LENGTH, model_variants


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
        self.log_length: Optional[int] = None  # training length of log-length scaling (a variant)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by 1/sqrt(2 L)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        token_std = self.pos.token_init_std()
        if token_std is not None:  # sinusoidal: tokens enter at the fixed table's scale
            nn.init.normal_(self.wte.weight, mean=0.0, std=token_std)

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

    @property
    def variants(self) -> tuple[str, ...]:
        """Inference-time context extensions, the first being the trained model: the encoding's
        own (RoPE's scalings) or "none", then log-length scaling ("logn", log_length.py)."""
        return model_variants(self.pos.variants)

    def set_variant(self, name: Optional[str], factor: float = 1.0) -> None:
        """Switch to context extension `name` for `factor` x the training length, without
        retraining (None: back to the trained configuration)."""
        if name is not None and name not in self.variants:
            raise ValueError(f"unknown variant {name!r}: this model offers {list(self.variants)}")
        own = name in self.pos.variants
        self.pos.set_variant(name if own else None, factor)
        self.log_length = self.cfg.block_size if name == LOG_LENGTH else None

    def variant_note(self, name: str) -> str:
        """What variant `name` does, for eval.json and the report."""
        if name == LOG_LENGTH:
            return (f"log-length scaling (Chiang and Cholak 2022): the q.k logits of the n-th query x "
                    f"max(1, log n / log {self.cfg.block_size}), any positional bias unscaled")
        if name in self.pos.variants:
            return self.pos.variant_note(name)
        return "the trained model"

    def forward(
        self,
        idx: Tensor,
        targets: Optional[Tensor] = None,
        cache: Optional[KVCache] = None,
        last_only: bool = False,
        positions: Optional[Tensor] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """idx (B, T) token ids -> logits (B, T, vocab) (or (B, 1, vocab) with `last_only`) and the
        mean cross-entropy over targets != -1 (None without targets).

        With a cache, the T new tokens sit at positions cache.length .. cache.length + T - 1.
        `positions` (B, T) int64, increasing along T, gives each sequence its own positions instead
        (training on randomized positions; only a `randomizable` encoding, no cache).
        """
        x = self.hidden(idx, cache, None if positions is None else self.sequence_positions(idx, positions, cache))
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
                self.check_cache_reusable(start + T, start)
            positions = Positions.make(start, T, idx.device)  # built once, handed to every layer
        x = self.wte(idx) * self.pos.token_scale()
        pe = self.pos.embed(positions)
        if pe is not None:
            x = x + pe.to(x.dtype)
        x = self.drop(x)
        flex = use_flex(self.pos, self.cfg, idx.is_cuda, cache is not None, self.training)
        inp = AttentionInputs(self.pos, positions, flex, self.log_length)
        for layer, block in enumerate(self.blocks):
            x = block(x, inp, cache, layer)
        if cache is not None and not positions.is_fixed:
            cache.advance(T)
        return self.ln_f(x)

    def sequence_positions(self, idx: Tensor, positions: Tensor, cache: Optional[KVCache]) -> Positions:
        if not self.pos.randomizable:
            raise ValueError(f"pos={self.pos_cfg.name} takes no per-sequence positions (it is not randomizable)")
        if cache is not None or positions.shape != idx.shape:
            raise ValueError(f"per-sequence positions need no cache and the shape of idx {tuple(idx.shape)}, "
                             f"got {tuple(positions.shape)}{' and a cache' if cache is not None else ''}")
        return Positions.of_sequences(positions)

    def check_cache_reusable(self, total: int, cached: int) -> None:
        """Refuse a cached forward whose cached keys and values are stale: an encoding that
        re-encodes earlier positions as the sequence grows (dynamic NTK past its original length)
        needs them recomputed, which `generate` / `CachedDecoder` do by re-prefilling."""
        if cached > 0 and self.pos.recompute_on_growth(total):
            raise ValueError(
                f"this encoding re-encodes every position once the sequence grows to {total} tokens, "
                f"so the {cached} cached keys and values are stale: decode with model.generate's "
                "generate / CachedDecoder, which re-prefill, or run a full forward without a cache"
            )

    def param_counts(self) -> dict[str, int]:
        """Embedding (token table, the learned position table, and an untied output layer, a
        second vocabulary table) vs everything else; a tied head is counted once, in the token table."""
        total = sum(p.numel() for p in self.parameters())
        head = 0 if self.cfg.tie_embeddings else self.lm_head.weight.numel()
        embedding = self.wte.weight.numel() + self.pos.embedding_parameters() + head
        return {"embedding": embedding, "non_embedding": total - embedding, "total": total}

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (Kaplan et al. 2020; PaLM App. B): 6 N for the matmuls, with N
        the non-embedding weights plus the head (one V x C matmul, tied or not), and 12 L C T for
        attention scores and values."""
        counts = self.param_counts()
        n = counts["non_embedding"] + self.wte.weight.numel()
        cfg = self.cfg
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * seq_len
