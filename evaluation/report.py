"""report.md and its figures, built only from the run directories' files (see runs.py).

Every number in a table is read from a run's metrics.jsonl (training) or eval.json (perplexity);
with several seeds a cell shows `mean ± h`, h the half-width of the 95% Student t interval of the
mean over seeds (evaluation/stats.py). The report is a pure function of its inputs (the run files,
the job and `info`), so evaluation/bundle.py can rebuild it bit for bit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional


from evaluation import plots
from evaluation.probes.report import probes_section
from evaluation.code_notes import code_lines
from evaluation.runs import Cell, RunRecord, by_encoding, ppl_rows, variant_notes

PROTOCOL_NAMES = {"nonoverlap": "non-overlapping windows", "sliding": "sliding window"}


def fmt_num(x: float, digits: int = 2) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}f}" if abs(x) < 1e5 else f"{x:.3g}"


def fmt_cell(cell: Optional[Cell], digits: int = 2) -> str:
    """`mean`, `mean ± h` over seeds (h: 95% t interval), or the cell's note ("n/a (table length 64)")."""
    if cell is None:
        return ""
    if cell.note is not None or not cell.values:
        return cell.note or "n/a"
    text = fmt_num(cell.mean, digits)
    return text if cell.half is None else f"{text} ± {fmt_num(cell.half, digits)}"


def md_table(header: list[str], rows: list[list[str]], align: Optional[list[str]] = None) -> str:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def training_table(runs: dict[str, list[RunRecord]], block_size: int) -> str:
    rows = []
    for enc, recs in runs.items():
        s = [r.summary for r in recs]
        params = s[0]["params"]
        vals = [x["best_val_loss"] for x in s if x["best_val_loss"] is not None]
        speeds = [x["tokens_per_s"] for x in s if x["tokens_per_s"] is not None]
        rows.append([
            enc,
            f"{params['total'] / 1e6:.3f}M",
            f"{params['non_embedding'] / 1e6:.3f}M",
            fmt_cell(Cell(speeds), 0) if speeds else "n/a",
            fmt_cell(Cell(vals), 4) if vals else "n/a",
            ", ".join(str(x["best_step"]) for x in s),
            ", ".join(str(x["step"]) + (" (early stop)" if x["stopped_early"] else "") for x in s),
            fmt_cell(Cell([x["wall_s"] for x in s]), 0),
        ])
    header = ["encoding", "params", "non-embedding", "train tokens/s", f"best val loss (L={block_size})",
              "best step", "steps", "train wall (s)"]
    return md_table(header, rows)


def ratio_cell(cells: dict[int, Cell], block_size: int, longest: int) -> Optional[Cell]:
    """Perplexity at `longest` over perplexity at L, seed by seed (None where either is missing)."""
    first, last = cells.get(block_size), cells.get(longest)
    ok = (first is not None and last is not None and first.values and last.note is None
          and len(first.values) == len(last.values))
    return Cell([b / a for a, b in zip(first.values, last.values)]) if ok else None


def ppl_table(runs: dict[str, list[RunRecord]], set_name: str, protocol: str, lengths: list[int],
              block_size: int) -> str:
    """Perplexity per encoding (and variant) at each length, plus the ratio of the longest
    length's perplexity to the training length's (per seed, then over seeds like every cell)."""
    rows = []
    for lbl, cells in ppl_rows(runs, set_name, protocol):
        row = [lbl] + [fmt_cell(cells.get(L)) for L in lengths]
        ratio = ratio_cell(cells, block_size, lengths[-1])
        row.append(fmt_cell(ratio) if ratio is not None else "n/a")
        rows.append(row)
    header = ["encoding"] + [f"L={L} ({L / block_size:g}x)" for L in lengths] + [f"{lengths[-1]} / {block_size}"]
    return md_table(header, rows)


def _setup_section(job: dict, runs: dict[str, list[RunRecord]], info: dict) -> str:
    m, t = job["model"], job["train"]
    tokens = t["max_steps"] * t["global_batch_size"] * m["block_size"]  # the budget; early stops use less
    train_tokens = info["train_tokens"]
    non_emb = {enc: recs[0].summary["params"]["non_embedding"] for enc, recs in runs.items()}
    total = {enc: recs[0].summary["params"]["total"] for enc, recs in runs.items()}
    tpp_non = tokens / max(non_emb.values())
    tpp_total = tokens / max(total.values())
    lines = [
        f"- **Model**: {m['n_layer']} layers, {m['n_head']} heads, width {m['n_embd']}, training length "
        f"L = {m['block_size']}, dropout {m['dropout']}; parameters per encoding in the table below "
        f"(the embedding is the {info['vocab_size']:,} x width token table, tied with the output layer).",
        f"- **Data**: `{job['data']['name']}`: {train_tokens:,} training tokens, {info['val_tokens']:,} "
        "validation tokens (GPT-2 BPE"
        + (f", restricted to data.vocab_size = {job['data']['vocab_size']:,}: the most frequent training ids, every "
           "other id one unknown id)." if job["data"].get("vocab_size") else ")."),
        f"- **Training** (the same recipe for every encoding): {t['max_steps']} steps of "
        f"{t['global_batch_size']} x {m['block_size']} tokens, lr {t['lr']} (warmup {t['warmup_steps']}, "
        f"cosine to {t['min_lr']}), weight decay {t['weight_decay']}, validation every {t['eval_interval']} "
        f"steps on {t['eval_batches']} batches, patience {t['patience']} (0: no early stopping); the best "
        "checkpoint by validation loss is evaluated.",
        f"- **Budget vs data**: up to {tokens:,} tokens per run = {tokens / train_tokens:.2f} epochs; "
        f"{tpp_non:.1f} tokens seen per non-embedding parameter, {tpp_total:.2f} per parameter in all; "
        f"the corpus holds {train_tokens / max(non_emb.values()):.2f} distinct training tokens per "
        "non-embedding parameter.",
        f"- **Seeds**: {', '.join(str(s) for s in job['seeds'])}"
        + (" (cells show mean ± half-width of the 95% Student t interval of the mean over seeds, "
           "t_0.975,n-1 x sd / sqrt(n); error bars in the plots likewise)." if len(job["seeds"]) > 1
           else " (one seed: no spread is measured; treat small differences as noise)."),
    ]
    return "\n".join(lines)


def _eval_section(runs: dict[str, list[RunRecord]], first_eval: dict, block_size: int, out: Path) -> list[str]:
    lengths, stride = first_eval["lengths"], first_eval["stride"]
    parts = [
        "## Length extrapolation",
        "",
        f"Perplexity at L x {', '.join(f'{x / block_size:g}' for x in lengths)} (lengths {lengths}). "
        "Non-overlapping: the text is cut into windows of the evaluation length and every token is "
        "scored, so a token sees on average half a window of context (Press et al.'s main protocol). "
        f"Sliding: a window of the evaluation length advances {stride} tokens at a time and "
        f"scores only its last {stride} tokens (capped at the length), so every scored token sees "
        "nearly a full window of context (stride 1 is the exact protocol). At every length and in both "
        "protocols the same tokens are scored (chunks of lcm(lengths) tokens, spread evenly over the "
        "text, never crossing a document's end). Rows `encoding + variant` are the same checkpoint "
        "with a context extension switched on at evaluation time, factor = length / L (no retraining); "
        "at L itself every variant is the trained model. For RoPE, dynamic NTK computes its base from the "
        "current length l, base * (s * l / L - s + 1)^(d / (d - 2)); with s = l / L too, as here, it "
        "scales the base more than `ntk` (s^(d / (d - 2))) in a whole-window evaluation.",
        "",
    ]
    notes = variant_notes(runs)
    if notes:
        parts += ["Variant rows:", "", *[f"- `{lbl}`: {note}" for lbl, note in notes], ""]
    for set_name, s in first_eval["sets"].items():
        parts += [
            f"### {set_name}",
            "",
            f"{s['about'].strip()}" if s["about"] else "",
            "",
            f"{s['num_documents']:,} document(s), {s['total_tokens']:,} tokens; scored: "
            f"{s['chunks']} of {s['chunks_available']} chunks of {s['chunk']} tokens = "
            f"**{s['scored_tokens']:,} tokens per cell**.",
            "",
        ]
        protocols = list(dict.fromkeys(r["protocol"] for r in s["rows"]))
        for protocol in protocols:
            title = PROTOCOL_NAMES.get(protocol, protocol)
            if protocol == "sliding":
                title += f", stride {stride}"
            parts += [f"**{title}**", "", ppl_table(runs, set_name, protocol, lengths, block_size), ""]
        ppl_png = plots.plot_ppl_vs_length(runs, set_name, protocols, block_size, out / f"ppl_{set_name}.png")
        pos_png = plots.plot_position_loss(runs, set_name, block_size, out / f"position_loss_{set_name}.png")
        parts += [f"![perplexity vs length, {set_name}]({ppl_png.name})", "",
                  f"![loss per token position, {set_name}]({pos_png.name})", ""]
    return parts


def _separations(cells: dict[str, Cell], digits: int) -> str:
    """`a < b, c; d < e` for every pair whose 95% intervals do not overlap (a lower), or `none`."""
    order = sorted((lbl for lbl, c in cells.items() if c.values and c.note is None), key=lambda k: cells[k].mean)
    groups = []
    for i, a in enumerate(order):
        above = [b for b in order[i + 1:] if cells[a].separated_from(cells[b])]
        if above:
            groups.append(f"{a} < {', '.join(above)}")
    means = ", ".join(f"{lbl} {fmt_cell(cells[lbl], digits)}" for lbl in order)
    return f"{'; '.join(groups) or 'none'} (ordered: {means})"


def _differences_section(runs: dict[str, list[RunRecord]], first_eval: Optional[dict], block_size: int) -> list[str]:
    """Which differences between encodings exceed their seed intervals, for every number measured."""
    if not any(len(recs) > 1 for recs in runs.values()):
        return []
    parts = [
        "## Differences larger than the seed intervals",
        "",
        "For each measurement, the pairs of encodings whose 95% intervals over seeds do not overlap "
        "(`a < b`: a is lower, i.e. better), then every encoding by its mean. Pairs not listed differ by "
        "less than their intervals explain. Variants (`encoding + variant` rows, such as RoPE's context "
        "extensions) are left out: they are not encodings but the same checkpoints evaluated otherwise.",
        "",
    ]
    losses = {enc: Cell([r.summary["best_val_loss"] for r in recs if r.summary["best_val_loss"] is not None])
              for enc, recs in runs.items()}
    parts.append(f"- **best val loss (L={block_size})**: {_separations(losses, 4)}")
    if first_eval:
        for set_name, s in first_eval["sets"].items():
            for protocol in dict.fromkeys(r["protocol"] for r in s["rows"]):
                rows = {lbl: cells for lbl, cells in ppl_rows(runs, set_name, protocol) if " + " not in lbl}
                name = f"{set_name}, {PROTOCOL_NAMES.get(protocol, protocol)}"
                lengths = first_eval["lengths"]
                for L in lengths:
                    cells = {lbl: c[L] for lbl, c in rows.items() if L in c}
                    parts.append(f"- **{name}, perplexity at L={L}**: {_separations(cells, 2)}")
                ratios = {lbl: ratio_cell(c, block_size, lengths[-1]) for lbl, c in rows.items()}
                ratios = {lbl: r for lbl, r in ratios.items() if r is not None}
                parts.append(f"- **{name}, perplexity at {lengths[-1]} / at {block_size}**: {_separations(ratios, 2)}")
    return parts + [""]


def _samples_section(runs: dict[str, list[RunRecord]]) -> list[str]:
    found = [(enc, recs[0].samples) for enc, recs in runs.items() if recs[0].samples]
    if not found:
        return []
    cfg = found[0][1]["config"]
    parts = [
        "## Samples",
        "",
        f"Prompt `{cfg['prompt']}`, generator seed {cfg['seed']}, temperature {cfg['temperature']}, "
        f"top-k {cfg['top_k']}, up to {cfg['max_new_tokens']} new tokens (cut at the end-of-text token); "
        "the first seed's checkpoint of each encoding.",
        "",
    ]
    for enc, rec in found:
        parts.append(f"**{enc}**")
        parts.append("")
        for story in rec["stories"]:
            parts += ["```text", story.strip(), "```"]
        parts.append("")
    return parts


def write_report(out: Path, records: list[RunRecord], job: dict, info: dict) -> Path:
    """Write out/report.md and its PNGs; returns the report's path.

    job: the resolved CompareJob as plain containers. info: command, started, code (the
    `training.provenance.code_version()` of the command), wall_s, phases, device, train_tokens,
    val_tokens, vocab_size (the model's), and optionally load, cpus, reused, runs. Nothing else is read (no clock, no git).
    """
    out.mkdir(parents=True, exist_ok=True)
    runs = by_encoding(records)
    block_size = job["model"]["block_size"]
    first_eval = next((r.eval for r in records if r.eval is not None), None)
    curves = plots.plot_loss_curves(runs, out / "loss_curves.png")
    warning, code = code_lines(records, info["code"])
    parts = [
        f"# Positional encodings on TinyStories: ablation report (`{job['name']}`)",
        "",
        *([warning, ""] if warning else []),
        f"Made by `{info['command']}` on {info['started']}, device "
        f"{info['device']}; this command took {info['wall_s'] / 60:.1f} min "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in info['phases'].items())}"
        + (f", summed over the runs, which ran {info['jobs']} at a time" if info.get("jobs", 1) > 1 else "") + ")"
        + (f", with a 1-minute load average of {info['load'][0]:.1f} at the start and {info['load'][1]:.1f} "
           f"at the end on {info['cpus']} CPUs (other processes shared the machine: times and tokens/s "
           "vary with that load, not only with the encoding)" if "load" in info else "")
        + (f"; {info['reused']} of {info['runs']} runs were trained by an earlier invocation and reused"
           if info.get("reused") else "")
        + ". The resolved configuration is in [config.yaml](config.yaml); the files every number and "
        "figure is read from are in [runs/](runs) (`python compare.py --rebuild "
        f"{info.get('report_dir', 'report/' + job['name'])}` rebuilds this report from them).",
        "",
        code,
        "",
        "## Setup",
        "",
        _setup_section(job, runs, info),
        "",
        "## Training",
        "",
        training_table(runs, block_size),
        "",
        f"![loss curves]({curves.name})",
        "",
    ]
    if first_eval:
        parts += _eval_section(runs, first_eval, block_size, out)
    parts += probes_section(runs, block_size, out)
    parts += _differences_section(runs, first_eval, block_size)
    parts += _samples_section(runs)
    path = out / "report.md"
    path.write_text("\n".join(parts).rstrip() + "\n")
    return path
