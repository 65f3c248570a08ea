"""The report's figures (matplotlib, Agg backend: no display needed), one PNG each."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from evaluation.runs import RunRecord, loss_curves, position_curves, ppl_rows  # noqa: E402

DPI = 90
PROTOCOL_TITLES = {"nonoverlap": "non-overlapping windows", "sliding": "sliding window"}


def _colors(labels: list[str]) -> dict[str, tuple]:
    """One colour per encoding; a variant (`enc + variant`) shares its encoding's colour, with its
    own line style."""
    bases = list(dict.fromkeys(lbl.split(" + ")[0] for lbl in labels))
    cmap = plt.get_cmap("tab10")
    return {b: cmap(i % 10) for i, b in enumerate(bases)}


VARIANT_STYLES = ["--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (3, 1, 1, 1)), (0, (1, 3))]


def _style(lbl: str) -> dict:
    """Solid for a trained model; a variant gets a dash pattern of its own, fixed by its name (the
    same in every plot)."""
    variant = lbl.split(" + ")[1] if " + " in lbl else None
    if variant is None:
        return {"linestyle": "-", "linewidth": 2.0}
    pattern = VARIANT_STYLES[sum(map(ord, variant)) % len(VARIANT_STYLES)]
    return {"linestyle": pattern, "linewidth": 1.3}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _smooth(values: np.ndarray, width: int = 5) -> np.ndarray:
    """Centred moving average over `width` points (fewer at the ends)."""
    kernel = np.ones(max(1, min(width, len(values))))  # "same" would return len(kernel) points otherwise
    return np.convolve(values, kernel, mode="same") / np.convolve(np.ones(len(values)), kernel, mode="same")


def plot_loss_curves(runs: dict[str, list[RunRecord]], path: Path) -> Path:
    """Training loss (thin, centred moving average of 5 logged steps) and validation loss (thick, markers)
    of every encoding on one axis, against tokens seen; each the mean over seeds. The y axis starts
    after the first evaluation, so the end of training is readable."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = _colors(list(runs))
    shown = []
    for enc, recs in runs.items():
        t, train = loss_curves(recs, "train", "loss")
        v_t, val = loss_curves(recs, "eval", "val_loss")
        train = _smooth(train) if len(train) else train
        ax.plot(t, train, color=colors[enc], linewidth=0.9, alpha=0.6)
        ax.plot(v_t, val, color=colors[enc], linewidth=2.0, marker="o", markersize=3, label=enc)
        if len(v_t):
            shown += [val, train[t >= v_t[0]]]
    if shown:
        values = np.concatenate(shown)
        low, high = values.min(), values.max()
        ax.set_ylim(low - 0.05 * (high - low + 0.1), high + 0.05 * (high - low + 0.1))
    ax.set_xlabel("training tokens")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("training loss (thin, smoothed) and validation loss (thick)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_ppl_vs_length(runs: dict[str, list[RunRecord]], set_name: str, protocols: list[str],
                       block_size: int, path: Path) -> Path:
    """Perplexity against evaluation length (log-log), one panel per protocol; error bars are the
    95% t interval of the mean over seeds."""
    fig, axes = plt.subplots(1, len(protocols), figsize=(6.0 * len(protocols), 4.5), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        rows = ppl_rows(runs, set_name, protocol)
        colors = _colors([lbl for lbl, _ in rows])
        for lbl, cells in rows:
            lengths = sorted(L for L, c in cells.items() if c.values)
            means = [cells[L].mean for L in lengths]
            errs = [cells[L].half or 0.0 for L in lengths]
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
    `bins` equal bins of positions (one window position has few samples). Every curve scores the
    same tokens, so the lower panel subtracts the median over the encodings (variants left
    out) at each position: what the text makes hard cancels, and what the encoding does remains."""
    fig, (ax, rel) = plt.subplots(2, 1, figsize=(7.5, 7.0), sharex=True, height_ratios=(3, 2))
    curves = position_curves(runs, set_name)
    colors = _colors([c[0] for c in curves])
    longest = max((c[1] for c in curves), default=block_size)
    width = max(1, longest // bins)
    binned = {}
    for lbl, length, loss, _ in curves:
        n = length // width
        binned[lbl] = loss[: n * width].reshape(n, width).mean(axis=1)  # (n,) mean of each bin
    centers = width * np.arange(longest // width) + (width - 1) / 2
    base = [b for lbl, b in binned.items() if " + " not in lbl]
    median = np.array([np.median([b[i] for b in base if i < len(b)]) for i in range(len(centers))])
    for lbl, b in binned.items():
        kw = dict(color=colors[lbl.split(" + ")[0]], label=lbl, **_style(lbl))
        ax.plot(centers[: len(b)], b, **kw)
        rel.plot(centers[: len(b)], b - median[: len(b)], **kw)
    for a in (ax, rel):
        a.axvline(block_size, color="grey", linewidth=0.8, linestyle=":")
        a.grid(alpha=0.3)
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(f"{set_name}: loss per position, non-overlapping windows of {longest}")
    ax.legend(fontsize=7, ncol=2)
    rel.axhline(0, color="black", linewidth=0.6)
    rel.set_yscale("symlog", linthresh=0.1)  # linear within +-0.1 nats, logarithmic beyond
    low, high = rel.get_ylim()
    ticks = [t for t in (-10, -1, -0.1, 0, 0.1, 1, 10) if low <= t <= high]
    rel.set_yticks(ticks, [f"{t:g}" for t in ticks])
    rel.set_ylabel("minus the median encoding (symlog)")
    rel.set_xlabel(f"token position in the window (bins of {width}); dotted: training length")
    return _save(fig, path)
