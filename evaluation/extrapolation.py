"""Length extrapolation of one model: perplexity at multiples of its training length, per protocol,
per eval set, per inference-time variant (RoPE's context extensions, log-length scaling for every
encoding); and the loss at each token position.

    model, cfg, vocab = load_model_and_vocab("runs/rope", device)
    texts = load_texts(eval_cfg, vocab)                      # the eval text in the model's ids
    result = evaluate_model(model, eval_cfg, texts, device)   # a JSON-able dict (see `evaluate_model`)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Optional

import torch
from tqdm import tqdm

from data.vocab import Vocab
from evaluation.config import DocumentMode, EvalConfig, Protocol
from evaluation.perplexity import Scores, WindowScorer
from evaluation.text import EvalText, load_eval_text
from evaluation.windows import Chunks, Windows, chunk_size, nonoverlap_windows, plan_chunks, sliding_windows
from training.precision import autocast, resolve_dtype

TABLE_NOTE = "n/a (table length {})"


def eval_lengths(block_size: int, multipliers: list[float]) -> list[int]:
    """The evaluation lengths: round(m * block_size) for each multiplier, sorted, distinct."""
    if not multipliers or any(not m > 0 for m in multipliers):
        raise ValueError(f"eval.multipliers must be positive numbers, got {list(multipliers)}")
    return sorted({max(1, round(m * block_size)) for m in multipliers})


def load_texts(cfg: EvalConfig, vocab: Vocab) -> dict[str, EvalText]:
    """Every eval set, tokenized with `vocab`'s tokenizer and mapped into its ids (the model's)."""
    if not cfg.sets:
        raise ValueError("eval.sets is empty: configure at least one evaluation text")
    return {name: load_eval_text(name, s, vocab, cfg.cache_dir) for name, s in cfg.sets.items()}


@dataclass
class Task:
    """One row of the result: a (variant, length, protocol) on one set; windows None when the
    model cannot take that length."""

    set_name: str
    variant: Optional[str]  # the model's context extension (RoPE's scalings, logn)
    base_variant: Optional[str]  # the model's first variant: the trained model itself
    factor: float  # extension factor: length / training length (at least 1)
    length: int
    protocol: Protocol
    stride: int
    windows: Optional[Windows]
    note: Optional[str] = None
    per_position: bool = False

    @property
    def key(self) -> tuple:
        """Tasks with the same key compute the same numbers: at factor 1 (length <= L_train) every
        variant is the trained model, so it is scored once, as the base variant."""
        variant = self.base_variant if self.factor == 1 else self.variant
        return (self.set_name, variant, self.length, self.protocol)


def model_variants(model, cfg: EvalConfig) -> list[Optional[str]]:
    """The variants to evaluate `model` with: those of `eval.variants` it offers (all of them when
    unset): its encoding's context extensions or "none", and log-length scaling "logn". A model
    that offers none of them is scored as trained (its first variant)."""
    chosen = [v for v in model.variants if cfg.variants is None or v in cfg.variants]
    return chosen or [model.variants[0]]


def plan_tasks(model, cfg: EvalConfig, texts: dict[str, EvalText]) -> tuple[list[Task], dict[str, Chunks]]:
    """Every (set, variant, length, protocol) to run, and the chunks scored on each set."""
    if cfg.stride < 1:
        raise ValueError(f"eval.stride must be >= 1, got {cfg.stride}")
    if cfg.batch_tokens < 1:
        raise ValueError(f"eval.batch_tokens must be >= 1, got {cfg.batch_tokens}")
    lengths = eval_lengths(model.cfg.block_size, cfg.multipliers)
    size = chunk_size(lengths)
    variants = model_variants(model, cfg)
    base = model.variants[0]
    limit = model.max_positions
    longest = max((L for L in lengths if limit is None or L <= limit), default=None)
    tasks, chunks = [], {}
    for name, text in texts.items():
        max_tokens = cfg.sets[name].max_tokens
        if max_tokens is not None and max_tokens < size:
            raise ValueError(
                f"eval.sets.{name}.max_tokens={max_tokens} is less than one chunk of lcm(lengths) = "
                f"{size} tokens (lengths {lengths}): raise it, or evaluate shorter lengths"
            )
        ch = plan_chunks(text.docs, size, max_tokens)
        if len(ch.first) == 0:
            raise ValueError(
                f"eval set {name!r}: no document holds {size} + 1 tokens (the longest eval length's "
                f"chunk); its longest has {max(b - a for a, b in text.docs)}. Use documents=stream, "
                "longer files or shorter lengths"
            )
        chunks[name] = ch
        for variant in variants:
            for L in lengths:
                for protocol in cfg.protocols:
                    protocol = Protocol(protocol)
                    stride = L if protocol is Protocol.nonoverlap else min(cfg.stride, L)
                    factor = max(1.0, L / model.cfg.block_size)
                    if limit is not None and L > limit:
                        tasks.append(Task(name, variant, base, factor, L, protocol, stride, None, TABLE_NOTE.format(limit)))
                        continue
                    windows = nonoverlap_windows(ch, L) if protocol is Protocol.nonoverlap else sliding_windows(ch, L, stride)
                    per_position = protocol is Protocol.nonoverlap and L == longest
                    tasks.append(Task(name, variant, base, factor, L, protocol, stride, windows, per_position=per_position))
    return tasks, chunks


def describe_work(tasks: list[Task], chunks: dict[str, Chunks], texts: dict[str, EvalText]) -> str:
    """The up-front estimate: per set the scored tokens, per (length, protocol) the windows and
    forwarded tokens, and the totals."""
    lines = []
    for name, ch in chunks.items():
        text = texts[name]
        lines.append(
            f"eval set {name}: {len(text.docs)} document(s), {len(text.tokens):,} tokens; "
            f"{len(ch.first)} of {ch.available} chunks of {ch.size} tokens -> the same "
            f"{ch.scored_tokens:,} tokens scored at every length and protocol"
        )
        variants = list(dict.fromkeys(t.variant for t in tasks if t.set_name == name and t.variant))
        seen = set()
        for t in tasks:
            key = (t.length, t.protocol)
            if t.set_name != name or key in seen:
                continue
            seen.add(key)
            work = "skipped: " + t.note if t.windows is None else (
                f"{len(t.windows):,} windows, {len(t.windows) * t.length:,} tokens forwarded"
            )
            lines.append(f"  length {t.length:>6}  {t.protocol.value:<10} stride {t.stride:>5}: {work}")
        if len(variants) > 1:
            lines.append(f"  x {len(variants)} variants: {', '.join(variants)} (at factor 1 all are "
                         "the trained model, scored once)")
    runs = unique_runs(tasks)
    windows = sum(len(t.windows) for t in runs)
    forwarded = sum(len(t.windows) * t.length for t in runs)
    scored = sum(t.windows.scored_tokens for t in runs)
    lines.append(f"total: {len(runs)} evaluations, {windows:,} windows, {forwarded:,} tokens forwarded, "
                 f"{scored:,} tokens scored")
    return "\n".join(lines)


def unique_runs(tasks: list[Task]) -> list[Task]:
    """The tasks that are scored (one per key: see Task.key), in order."""
    return list({t.key: t for t in tasks if t.windows is not None}.values())


def check_plan(tasks: list[Task], cfg: EvalConfig) -> int:
    """The tokens the plan forwards; a ValueError naming the override when above the cap."""
    forwarded = sum(len(t.windows) * t.length for t in unique_runs(tasks))
    if forwarded > cfg.max_forward_tokens:
        raise ValueError(
            f"this evaluation would forward {forwarded:,} tokens, above eval.max_forward_tokens="
            f"{cfg.max_forward_tokens:,}: lower eval.sets.<name>.max_tokens, use fewer eval.multipliers or a "
            f"larger eval.stride, or pass eval.max_forward_tokens={forwarded} to run it anyway"
        )
    return forwarded


def estimate_seconds(scorer: WindowScorer, tasks: list[Task], texts: dict[str, EvalText]) -> tuple[float, int, float]:
    """A short measured warm-up: one window of each distinct (length, protocol, stride) is scored
    and timed, and its time per window is scaled by that task's window count (RoPE's variants cost
    what the unscaled model costs). Returns (estimated seconds, warm-up tokens, warm-up seconds)."""
    runs = unique_runs(tasks)
    if not runs:
        return 0.0, 0, 0.0
    first = min(runs, key=lambda t: t.length)
    on_batch, scorer.on_batch = scorer.on_batch, None
    try:
        scorer.score(texts[first.set_name].tokens, _head(first.windows))  # untimed: first-call overheads
        per_window: dict[tuple, float] = {}
        spent, tokens = 0.0, 0
        for t in runs:
            shape = (t.length, t.protocol, t.stride)
            if shape not in per_window:
                start = time.perf_counter()
                scorer.score(texts[t.set_name].tokens, _head(t.windows))
                per_window[shape] = time.perf_counter() - start
                spent += per_window[shape]
                tokens += t.length
    finally:
        scorer.on_batch = on_batch
    total = sum(per_window[(t.length, t.protocol, t.stride)] * len(t.windows) for t in runs)
    return total, tokens, spent


def _head(windows: Windows) -> Windows:
    """The first window of `windows`."""
    return replace(windows, starts=windows.starts[:1], score_from=windows.score_from[:1],
                   score_to=windows.score_to[:1])


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def evaluate_model(model, cfg: EvalConfig, texts: dict[str, EvalText], device: torch.device,
                   log=print) -> dict:
    """Evaluate `model` (already on `device`) on every set; returns

        {"pos", "variants", "block_size", "lengths", "stride", "device", "dtype",
         "sets": {name: {"files", "documents", "about", "num_documents", "total_tokens", "unknown_rate", "chunk",
                         "chunks", "chunks_available", "scored_tokens",
                         "rows": [{"variant", "length", "protocol", "stride", "windows",
                                   "forwarded_tokens", "scored_tokens", "loss", "ppl", "note"}],
                         "position_loss": [{"variant", "length", "loss": [per position]}]}}}

    `unknown_rate` is the share of the set's tokens that the model's vocabulary maps to its unknown
    id (None for a vocabulary without one); `variant` is the model's context extension ("variants"
    lists them, the first being the trained model; "variant_notes" says what each one is); `loss`
    and `ppl` are None and
    `note` says why when the model cannot take the length (the learned table).
    """
    tasks, chunks = plan_tasks(model, cfg, texts)
    log(describe_work(tasks, chunks, texts))
    total = check_plan(tasks, cfg)
    dtype = resolve_dtype(cfg.dtype, device)
    scorer = WindowScorer(model, device, lambda: autocast(device, dtype), cfg.batch_tokens)
    estimate, warm_tokens, warm_s = estimate_seconds(scorer, tasks, texts)
    log(f"estimated time: about {format_duration(estimate)} on {device} (from a warm-up of {warm_tokens:,} "
        f"tokens in {warm_s:.1f} s)")
    bar = tqdm(total=total, unit="tok", unit_scale=True, desc="eval", dynamic_ncols=True,
               disable=not cfg.progress)
    scorer.on_batch = bar.update
    results = {
        name: {
            "files": [str(f) for f in texts[name].files],
            "documents": DocumentMode(cfg.sets[name].documents).value,
            "about": cfg.sets[name].about,
            "num_documents": len(texts[name].docs),
            "total_tokens": len(texts[name].tokens),
            "unknown_rate": texts[name].unknown_rate,
            "chunk": ch.size,
            "chunks": len(ch.first),
            "chunks_available": ch.available,
            "scored_tokens": ch.scored_tokens,
            "rows": [],
            "position_loss": [],
        }
        for name, ch in chunks.items()
    }
    done: dict[tuple, Scores] = {}
    try:
        for t in tasks:
            row = {"variant": t.variant, "length": t.length, "protocol": t.protocol.value, "stride": t.stride}
            if t.windows is None:
                row.update(windows=0, forwarded_tokens=0, scored_tokens=0, loss=None, ppl=None, note=t.note)
            else:
                if t.key not in done:
                    model.set_variant(t.variant, t.factor)
                    bar.set_postfix_str(f"{t.set_name} {t.variant or model.pos_cfg.name} L={t.length} {t.protocol.value}")
                    done[t.key] = scorer.score(texts[t.set_name].tokens, t.windows, per_position=t.per_position)
                s = done[t.key]
                row.update(windows=s.windows, forwarded_tokens=s.forwarded_tokens, scored_tokens=s.count,
                           loss=s.loss, ppl=s.ppl, note=None)
                if t.per_position:
                    results[t.set_name]["position_loss"].append(
                        {"variant": t.variant, "length": t.length, "loss": s.position_loss().tolist()}
                    )
            results[t.set_name]["rows"].append(row)
    finally:
        bar.close()
        model.set_variant(None)
    return {
        "pos": model.pos_cfg.name,
        "variants": list(model.variants),
        "variant_notes": {v: model.variant_note(v) for v in model.variants},
        "block_size": model.cfg.block_size,
        "lengths": eval_lengths(model.cfg.block_size, cfg.multipliers),
        "stride": cfg.stride,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "sets": results,
    }


def format_rows(result: dict) -> str:
    """A plain-text table of one model's perplexities: a line per (set, protocol, variant)."""
    lengths = result["lengths"]
    lines = []
    for name, s in result["sets"].items():
        unknown = "" if s.get("unknown_rate") is None else f", {100 * s['unknown_rate']:.2f}% unknown tokens"
        lines.append(f"{name}: {s['scored_tokens']:,} scored tokens per cell{unknown}")
        lines.append(f"  {'protocol':<11}{'variant':<9}" + "".join(f"{L:>12}" for L in lengths))
        keys = []
        for r in s["rows"]:
            if (r["protocol"], r["variant"]) not in keys:
                keys.append((r["protocol"], r["variant"]))
        for protocol, variant in keys:
            cells = {r["length"]: r for r in s["rows"] if (r["protocol"], r["variant"]) == (protocol, variant)}
            text = "".join(
                f"{'n/a':>12}" if cells[L]["ppl"] is None else f"{cells[L]['ppl']:>12.3f}" for L in lengths
            )
            lines.append(f"  {protocol:<11}{variant or '-':<9}{text}")
    return "\n".join(lines)
