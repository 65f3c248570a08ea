"""The report's figures (matplotlib, Agg backend: no display needed), one PNG each."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from evaluation.runs import RunRecord, loss_curves, position_curves, ppl_rows  # noqa: E402

DPI = 110
PROTOCOL_TITLES = {"nonoverlap": "non-overlapping windows", "sliding": "sliding window"}


def _colors(labels: list[str]) -> dict[str, tuple]:
    """One colour per encoding; a RoPE variant shares rope's colour with its own line style."""
    bases = list(dict.fromkeys(lbl.split(" + ")[0] for lbl in labels))
    cmap = plt.get_cmap("tab10")
    return {b: cmap(i % 10) for i, b in enumerate(bases)}


def _style(lbl: str) -> dict:
    variant = lbl.split(" + ")[1] if " + " in lbl else None
    styles = {None: "-", "linear": "--", "ntk": "-.", "dynamic": ":", "yarn": (0, (5, 1, 1, 1, 1, 1))}
    return {"linestyle": styles.get(variant, "--"), "linewidth": 2.0 if variant is None else 1.3}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_loss_curves(runs: dict[str, list[RunRecord]], path: Path) -> Path:
    """Training loss (thin) and validation loss (thick, markers) of every encoding on one axis,
    against tokens seen; each the mean over seeds."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = _colors(list(runs))
    for enc, recs in runs.items():
        t, train = loss_curves(recs, "train", "loss")
        v_t, val = loss_curves(recs, "eval", "val_loss")
        ax.plot(t, train, color=colors[enc], linewidth=0.8, alpha=0.55)
        ax.plot(v_t, val, color=colors[enc], linewidth=2.0, marker="o", markersize=3, label=enc)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("training loss (thin) and validation loss (thick)")
    lows = [loss_curves(recs, "eval", "val_loss")[1] for recs in runs.values()]
    lows = np.concatenate([x for x in lows if len(x)]) if any(len(x) for x in lows) else np.zeros(0)
    if len(lows):  # leave out the first steps' ~10.8 so the end of training is readable
        top = np.percentile(lows, 90)
        ax.set_ylim(lows.min() - 0.1 * (top - lows.min() + 0.1), top + 0.3)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_ppl_vs_length(runs: dict[str, list[RunRecord]], set_name: str, protocols: list[str],
                       block_size: int, path: Path) -> Path:
    """Perplexity against evaluation length (log-log), one panel per protocol; error bars are the
    standard deviation over seeds."""
    fig, axes = plt.subplots(1, len(protocols), figsize=(6.0 * len(protocols), 4.5), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        rows = ppl_rows(runs, set_name, protocol)
        colors = _colors([lbl for lbl, _ in rows])
        for lbl, cells in rows:
            lengths = sorted(L for L, c in cells.items() if c.values)
            means = [cells[L].mean for L in lengths]
            errs = [cells[L].std or 0.0 for L in lengths]
            ax.errorbar(lengths, means, yerr=errs, color=colors[lbl.split(" + ")[0]], marker="o",
                        markersize=3, capsize=2, label=lbl, **_style(lbl))
        ax.axvline(block_size, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("evaluation length (tokens); dotted: training length")
        ax.set_ylabel("perplexity")
        ax.set_title(f"{set_name}: {PROTOCOL_TITLES.get(protocol, protocol)}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_position_loss(runs: dict[str, list[RunRecord]], set_name: str, block_size: int, path: Path,
                       bins: int = 64) -> Path:
    """Mean loss at each position of non-overlapping windows of the longest length, averaged in
    `bins` equal bins of positions (one window position has few samples)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    curves = position_curves(runs, set_name)
    colors = _colors([c[0] for c in curves])
    longest = max((c[1] for c in curves), default=block_size)
    width = max(1, longest // bins)
    for lbl, length, loss, _ in curves:
        n = length // width
        binned = loss[: n * width].reshape(n, width).mean(axis=1)  # (n,) mean of each bin
        centers = width * np.arange(n) + (width - 1) / 2
        ax.plot(centers, binned, color=colors[lbl.split(" + ")[0]], label=lbl, **_style(lbl))
    ax.axvline(block_size, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(f"token position in the window (bins of {width}); dotted: training length")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(f"{set_name}: loss per position, non-overlapping windows of {longest}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)
