"""The report's "Usable context" section, from the probes' results in each run's eval.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from evaluation.probes import plots
from evaluation.probes.results import (RepeatCurve, attention_maps, probe_records, repeat_curves,
                                       retrieval_by_depth, retrieval_table)
from evaluation.runs import RunRecord


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def fmt_usable(best: Optional[int], nxt: Optional[int], first: int, untested: bool) -> str:
    """d* and where the gain is gone: "256 (gone by 512)", "< 32", ">= 1024 (all tested)"."""
    if best is None:
        return f"< {first}"
    if nxt is None:
        return f">= {best} " + ("(longer: n/a)" if untested else "(all tested)")
    return f"{best} (gone by {nxt})"


def repeat_table(curves: list[RepeatCurve], block_size: int) -> str:
    distances = curves[0].distances
    rows = []
    for c in curves:
        fitted = [d for d, n in zip(c.distances, c.notes) if n is None]
        cells = [n if n is not None else f"{g:.3f} [{lo:.3f}, {hi:.3f}]"
                 for g, lo, hi, n in zip(c.gain, c.low, c.high, c.notes)]
        usable = fmt_usable(*c.usable, distances[0], len(fitted) < len(distances)) if fitted else "n/a"
        rows.append([c.label, usable] + cells)
    header = ["encoding", "usable context (tokens)"] + [f"d={d} ({d / block_size:g}x)" for d in distances]
    return _md_table(header, rows)


def _retrieval_table(rows, lengths: list[int], block_size: int) -> str:
    out = []
    for lbl, cells in rows:
        out.append([lbl] + [cells[T]["note"] if cells[T]["note"] else
                            f"{cells[T]['accuracy']:.2f} / {cells[T]['mean_rank']:.1f} / {cells[T]['prob']:.3f}"
                            for T in lengths])
    return _md_table(["encoding"] + [f"T={T} ({T / block_size:g}x)" for T in lengths], out)


def _attention_table(maps: dict, block_size: int) -> str:
    """Per row label and length: the mean attention distance over heads, and the mass past L
    averaged over heads with its largest head (lengths past L only)."""
    lengths = sorted({T for per_variant in maps.values() for _, ls, _, _ in per_variant for T in ls})
    rows = []
    for per_variant in maps.values():
        for lbl, ls, dist, far in per_variant:
            cells = []
            for T in lengths:
                if T not in ls:
                    cells.append("n/a")
                    continue
                j = ls.index(T)
                text = f"{dist[..., j].mean():.0f}"
                if T > block_size:
                    text += f"; {far[..., j].mean():.3f} (max {far[..., j].max():.3f})"
                cells.append(text)
            rows.append([lbl] + cells)
    header = ["encoding"] + [f"T={T}" + ("" if T <= block_size else ": distance; mass past L") for T in lengths]
    return _md_table(header, rows)


def probes_section(runs: dict[str, list[RunRecord]], block_size: int, out: Path) -> list[str]:
    """Markdown lines of the section (none when no run has probe results); figures go to `out`."""
    evals = [r.eval for recs in runs.values() for r in recs if r.eval and r.eval.get("probes")]
    if not evals:
        return []
    cost = [e["probes"] for e in evals]
    parts = [
        "## Usable context",
        "",
        "Does an encoding use the context past L, or only survive it? A flat perplexity curve can "
        "mean either. The probes (evaluation/probes/) ask directly, on the same checkpoints and "
        f"inference-time variants; they forwarded {np.mean([c['tokens_forwarded'] for c in cost]):,.0f} "
        f"tokens per model on average in {np.mean([c['seconds'] for c in cost]):.0f} s "
        f"({sum(c['seconds'] for c in cost):.0f} s in all).",
        "",
    ]
    rep = probe_records(runs, "repeat")
    if rep:
        first = next(iter(rep.values()))[0]
        parts += [
            "### Repeated span",
            "",
            f"Input: [the {first['span']}-token span's preceding text, d tokens] [span S] [its following "
            "text, d - |S| tokens] [S again], so the copies are d tokens apart and all but the second "
            "copy is real text in order, inside one document (never across a book's end). The "
            f"{first['spans']} spans per set are spread evenly over the text and are the same at every "
            "distance. Gain = loss on copy 1 minus loss on copy 2 over the span's tokens after the first "
            "(nats, mean over spans with its 95% t-interval; several seeds: each span's gain is averaged "
            "over seeds first). A model that reaches back d tokens and copies gains a lot; one that "
            "cannot gains ~0; a negative gain means the second copy, d positions later, is predicted worse "
            "than the first (a position past L hurting more than the copy helps). **Usable context** = the "
            "largest tested distance d* at which the gain's "
            "interval lies above 0 there and at every shorter distance; the gain disappears somewhere in "
            "[d*, next tested distance). The input is 2d + |S| tokens long, so the learned table stops "
            "being testable early.",
            "",
        ]
        for set_name in first["sets"]:
            curves = repeat_curves(runs, set_name)
            png = plots.plot_repeat_gain(curves, set_name, block_size, out / f"repeat_gain_{set_name}.png")
            parts += [f"**{set_name}**", "", repeat_table(curves, block_size), "",
                      f"![repeated-span gain, {set_name}]({png.name})", ""]
    ret = probe_records(runs, "retrieval")
    if ret:
        r = next(iter(ret.values()))[0]
        k = len(r["words"])
        parts += [
            "### Key-value retrieval",
            "",
            f"`{r['key'].format(word=' <w>').strip()}` at depth {', '.join(f'{d:g}' for d in r['depths'])} of "
            f"filler text from {r['set']} ({r['fillers']} filler piece(s), the same at every length), "
            f"then `{r['query'].strip()}` at the end; the {k} candidates ({', '.join(w.strip() for w in r['words'])}) "
            "are ranked by the model's next-token logits, every filler tried with every candidate as the key. "
            f"Cells: accuracy / mean rank / the right word's share of the candidates' probability, averaged "
            f"over depths; chance is {1 / k:.3f} / {(k + 1) / 2:.1f} / {1 / k:.3f}. The probe was not tuned "
            "to make small TinyStories models pass it.",
            "",
            _retrieval_table(retrieval_table(runs), r["lengths"], block_size),
            "",
        ]
        png = plots.plot_retrieval(retrieval_by_depth(runs), 1 / k, block_size, out / "retrieval.png")
        parts += [f"![key-value retrieval]({png.name})", ""]
    maps = attention_maps(runs)
    if maps:
        a = next(iter(probe_records(runs, "attention").values()))[0]
        parts += [
            "### Attention statistics",
            "",
            f"Per layer and head, from {a['windows']} window(s) of {a['set']} per length (the same start "
            "positions at every length), through the explicit attention path (the fused kernels return "
            "no weights): the mean attention distance sum_j a_ij (i - j) over all queries (uniform "
            "attention over the prefix gives (T - 1) / 4), and the attention mass on tokens farther than "
            f"L = {block_size} back, over the queries that have any. The table gives that mass averaged "
            "over all heads and for the farthest-looking head, after the mean distance over heads.",
            "",
            _attention_table(maps, block_size),
            "",
        ]
        for enc, per_variant in maps.items():
            png = plots.plot_attention_maps(enc, per_variant, block_size, out / f"attention_{enc}.png")
            parts += [f"![attention statistics, {enc}]({png.name})", ""]
    return parts
