"""All the probes of one model, on every inference-time variant (see the package docstring)."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from data.encode import get_tokenizer
from data.vocab import Vocab
from evaluation.config import EvalConfig
from evaluation.extrapolation import eval_lengths, model_variants
from evaluation.probes.attention import attention_stats
from evaluation.probes.config import Probe
from evaluation.probes.forward import Forward, fits, use_variant
from evaluation.probes.placement import spread_positions
from evaluation.probes.repeat import distances_of, plan_spans, repeat_rows, usable_context
from evaluation.probes.retrieval import retrieval_rows
from evaluation.text import EvalText
from training.precision import autocast, resolve_dtype


def _set_name(option: str, name: Optional[str], texts: dict[str, EvalText]) -> str:
    if name is None:
        return next(iter(texts))
    if name not in texts:
        raise ValueError(f"{option}={name!r} is not one of eval.sets ({', '.join(texts)})")
    return name


class ProbePlan:
    """What each probe will run, checked and costed before any forward pass."""

    def __init__(self, model, cfg: EvalConfig, texts: dict[str, EvalText]):
        self.probes = [Probe(p) for p in cfg.probes]
        L = model.cfg.block_size
        self.variants = model_variants(model, cfg)
        self.forwards: dict[str, dict[int, int]] = {}  # probe -> {forward length: tokens forwarded}, per variant
        if Probe.repeat in self.probes:
            r = cfg.repeat
            self.distances = distances_of(L, list(r.distances), r.span)
            names = list(texts) if r.sets is None else [_set_name("eval.repeat.sets", n, texts) for n in r.sets]
            self.spans = {n: plan_spans(texts[n].docs, self.distances[-1], r.spans) for n in names}
            spans = sum(len(s) for s in self.spans.values())
            self.forwards["repeat"] = {2 * d + r.span: spans * (2 * d + r.span) for d in self.distances
                                       if fits(model, 2 * d + r.span)}
        if Probe.retrieval in self.probes:
            r = cfg.retrieval
            self.retrieval_set = _set_name("eval.retrieval.set", r.set, texts)
            self.retrieval_lengths = eval_lengths(L, list(r.lengths))
            trials = len(r.depths) * len(r.words) * r.fillers
            self.forwards["retrieval"] = {T: trials * T for T in self.retrieval_lengths if fits(model, T)}
        if Probe.attention in self.probes:
            a = cfg.attention
            if a.windows < 1:
                raise ValueError(f"eval.attention.windows must be >= 1, got {a.windows}")
            self.attention_set = _set_name("eval.attention.set", a.set, texts)
            self.attention_lengths = [T for T in eval_lengths(L, cfg.multipliers) if fits(model, T)]
            self.attention_starts = spread_positions(texts[self.attention_set].docs, 0,
                                                     max(self.attention_lengths, default=0), a.windows,
                                                     "eval.attention.windows")
            self.forwards["attention"] = {T: a.windows * T for T in self.attention_lengths}
        self.work = {probe: sum(by_length.values()) for probe, by_length in self.forwards.items()}  # per variant

    def describe(self, cfg: EvalConfig) -> str:
        if not self.probes:
            return "probes: none (eval.probes=[])"
        lines = [f"probes: {', '.join(p.value for p in self.probes)}, x {len(self.variants)} variant(s)"]
        if "repeat" in self.work:
            lines.append(f"  repeat: {cfg.repeat.spans} spans of {cfg.repeat.span} tokens per set "
                         f"({', '.join(self.spans)}), distances {self.distances}: "
                         f"{self.work['repeat']:,} tokens forwarded")
        if "retrieval" in self.work:
            r = cfg.retrieval
            lines.append(f"  retrieval: lengths {self.retrieval_lengths} x {len(r.depths)} depths x "
                         f"{len(r.words)} words x {r.fillers} fillers from {self.retrieval_set}: "
                         f"{self.work['retrieval']:,} tokens forwarded")
        if "attention" in self.work:
            lines.append(f"  attention: {cfg.attention.windows} window(s) per length {self.attention_lengths} from "
                         f"{self.attention_set}, explicit attention path: {self.work['attention']:,} tokens forwarded")
        lines.append(f"  total: {sum(self.work.values()) * len(self.variants):,} tokens forwarded")
        return "\n".join(lines)


class ModelIds:
    """The tokenizer seen through the model's vocabulary: `encode_ordinary(text)` gives model ids
    (a word outside a restricted vocabulary comes back as its unknown id)."""

    def __init__(self, vocab: Vocab):
        self.vocab, self.enc = vocab, get_tokenizer(vocab.tokenizer)

    def encode_ordinary(self, text: str) -> list[int]:
        return self.vocab.to_model(self.enc.encode_ordinary(text)).astype("int64").tolist()


def run_probes(model, cfg: EvalConfig, texts: dict[str, EvalText], vocab: Vocab, device: torch.device,
               log=print) -> dict:
    """The probes' results (JSON-able) for `model` (already on `device`):

        {"seconds", "tokens_forwarded",
         "repeat": {"span", "spans", "distances", "sets": {name: {"starts", "variants": [{"variant", "rows"}]}}},
         "retrieval": {"set", "words", "key", "query", "lengths", "depths", "fillers",
                       "variants": [{"variant", "rows"}]},
         "attention": {"set", "windows", "lengths", "variants": [{"variant",
                       "mean_distance": [layer][head][length], "far_mass": [layer][head][length]}]}}

    (only the probes asked for); rows are described in repeat.py and retrieval.py.
    """
    plan = ProbePlan(model, cfg, texts)
    log(plan.describe(cfg))
    if not plan.probes:
        return {}
    t0 = time.perf_counter()
    dtype = resolve_dtype(cfg.dtype, device)
    total = sum(plan.work.values()) * len(plan.variants)
    bar = tqdm(total=total, unit="tok", unit_scale=True, desc="probes", dynamic_ncols=True, disable=not cfg.progress)
    forward = Forward(model, device, lambda: autocast(device, dtype), cfg.batch_tokens, bar.update)
    was_training = model.training
    model.eval()
    out: dict = {}
    try:
        for variant in plan.variants:
            def at(T: int, what: str) -> None:
                use_variant(model, variant, T)
                bar.set_postfix_str(f"{variant or model.pos_cfg.name} {what} T={T}")

            if Probe.repeat in plan.probes:
                _run_repeat(out, plan, cfg, forward, model, texts, variant, at)
            if Probe.retrieval in plan.probes:
                _run_retrieval(out, plan, cfg, forward, model, texts, vocab, variant, at)
            if Probe.attention in plan.probes and plan.attention_lengths:  # none: no length fits
                _run_attention(out, plan, cfg, forward, model, texts, variant, at, device, bar.update)
    finally:
        bar.close()
        model.train(was_training)
        model.set_variant(None)
    out["seconds"] = time.perf_counter() - t0
    out["tokens_forwarded"] = total
    log(format_probes(out, model.pos_cfg.name))
    return out


def _run_repeat(out, plan, cfg, forward, model, texts, variant, at) -> None:
    r = cfg.repeat
    rep = out.setdefault("repeat", {"span": r.span, "spans": r.spans, "distances": plan.distances, "sets": {}})
    for name, starts in plan.spans.items():
        s = rep["sets"].setdefault(name, {"starts": starts.tolist(), "variants": []})
        rows = repeat_rows(forward, model, texts[name].tokens, starts, plan.distances, r.span,
                           lambda T: at(T, f"repeat {name}"))
        s["variants"].append({"variant": variant, "rows": rows})


def _run_retrieval(out, plan, cfg, forward, model, texts, vocab, variant, at) -> None:
    r = cfg.retrieval
    ret = out.setdefault("retrieval", {
        "set": plan.retrieval_set, "words": list(r.words), "key": r.key, "query": r.query,
        "lengths": plan.retrieval_lengths, "depths": list(r.depths), "fillers": r.fillers, "variants": []})
    text = texts[plan.retrieval_set]
    rows = retrieval_rows(forward, model, ModelIds(vocab), text.tokens, text.docs, r,
                          plan.retrieval_lengths, lambda T: at(T, "retrieval"), unknown_id=vocab.unk_id)
    ret["variants"].append({"variant": variant, "rows": rows})


def _run_attention(out, plan, cfg, forward, model, texts, variant, at, device, on_batch) -> None:
    att = out.setdefault("attention", {"set": plan.attention_set, "windows": cfg.attention.windows,
                                       "lengths": plan.attention_lengths, "variants": []})
    tokens = np.asarray(texts[plan.attention_set].tokens)
    per_length = []
    for T in plan.attention_lengths:
        at(T, "attention")
        windows = tokens[plan.attention_starts[:, None] + np.arange(T)]  # (W, T)
        per_length.append(attention_stats(model, windows, device, forward.autocast, cfg.batch_tokens, on_batch))
    far = [s.far_mass() for s in per_length]  # per length: (layer, head), or None up to L
    n_layer, n_head = per_length[0].mean_distance().shape
    att["variants"].append({
        "variant": variant,
        "mean_distance": np.stack([s.mean_distance() for s in per_length], axis=-1).tolist(),  # (layer, head, length)
        "far_mass": [[[None if f is None else float(f[layer, head]) for f in far] for head in range(n_head)]
                     for layer in range(n_layer)],
    })


def format_probes(out: dict, encoding: str) -> str:
    """Plain-text summary: usable context and gains per set and variant, retrieval accuracy per
    length, attention mass past L per length (means over heads)."""
    lines = [f"probes: {out['tokens_forwarded']:,} tokens forwarded in {out['seconds']:.1f} s"]
    for name, s in out.get("repeat", {}).get("sets", {}).items():
        for v in s["variants"]:
            ok = [r for r in v["rows"] if r["note"] is None]
            best, nxt = usable_context([r["distance"] for r in ok], [r["gain_low"] for r in ok])
            gains = " ".join(f"{r['distance']}:{r['gain']:+.2f}" for r in ok)
            lines.append(f"  repeat {name} {v['variant'] or encoding}: usable context {best} (next {nxt}); "
                         f"gain by distance {gains}")
    for v in out.get("retrieval", {}).get("variants", []):
        acc: dict = {}
        for r in v["rows"]:
            if r["note"] is None:
                acc.setdefault(r["length"], []).append(r["accuracy"])
        lines.append(f"  retrieval {v['variant'] or encoding}: accuracy by length "
                     + " ".join(f"{T}:{np.mean(a):.2f}" for T, a in acc.items()))
    att = out.get("attention", {})
    for v in att.get("variants", []):
        far = np.array(v["far_mass"], dtype=float)  # (layer, head, length), NaN up to L
        lines.append(f"  attention {v['variant'] or encoding}: mass past L by length "
                     + " ".join(f"{T}:{np.nanmean(far[..., j]):.3f}" for j, T in enumerate(att["lengths"])
                                if np.isfinite(far[..., j]).any()))
    return "\n".join(lines)
