"""The "Usable context" figures: repeat gain by distance, retrieval by length, attention maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.plots import _colors, _save, _style, plt
from evaluation.probes.results import RepeatCurve


def plot_repeat_gain(curves: list[RepeatCurve], set_name: str, block_size: int, path: Path) -> Path:
    """Gain (loss on the first copy minus the second, nats) against the distance between the
    copies, with 95% intervals over spans."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = _colors([c.label for c in curves])
    for c in curves:
        ok = [i for i, n in enumerate(c.notes) if n is None]
        d = np.array([c.distances[i] for i in ok])
        g = np.array([c.gain[i] for i in ok])
        err = np.array([[g[k] - c.low[i], c.high[i] - g[k]] for k, i in enumerate(ok)]).T.reshape(2, -1)
        ax.errorbar(d, g, yerr=err, color=colors[c.label.split(" + ")[0]], marker="o", markersize=3,
                    capsize=2, label=c.label, **_style(c.label))
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvline(block_size, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("distance between the copies (tokens); dotted: training length")
    ax.set_ylabel("gain: loss(copy 1) - loss(copy 2) (nats)")
    ax.set_title(f"{set_name}: repeated-span gain, 95% interval over spans")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_retrieval(rows: list[tuple[str, dict[float, dict[int, float]]]], chance: float, block_size: int,
                   path: Path) -> Path:
    """The right word's share of the candidates' probability against the total length, one
    panel per depth; dashed: chance (1 / candidates)."""
    depths = sorted({d for _, by in rows for d in by})
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 4.0), squeeze=False, sharey=True)
    colors = _colors([lbl for lbl, _ in rows])
    for ax, depth in zip(axes[0], depths):
        for lbl, by in rows:
            cells = by.get(depth, {})
            lengths = sorted(cells)
            ax.plot(lengths, [cells[T] for T in lengths], color=colors[lbl.split(" + ")[0]], marker="o",
                    markersize=3, label=lbl, **_style(lbl))
        ax.axhline(chance, color="black", linewidth=0.8, linestyle="--")
        ax.axvline(block_size, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("total length (tokens)")
        ax.set_title(f"key at depth {depth:g}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("probability of the right word among the candidates")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, path)


def plot_attention_maps(encoding: str, maps: list, block_size: int, path: Path) -> Path:
    """Per variant, two heat maps of (layer.head) x evaluation length: mean attention distance
    in tokens, and the attention mass on tokens farther back than L."""
    n_rows = len(maps)
    n_heads = maps[0][2].shape[0] * maps[0][2].shape[1]
    fig, axes = plt.subplots(n_rows, 2, figsize=(10.0, 0.9 + 0.32 * n_heads * n_rows), squeeze=False)
    for (lbl, lengths, dist, far), row in zip(maps, axes):
        for ax, values, title, cmap in ((row[0], dist, "mean attention distance (tokens)", "viridis"),
                                        (row[1], far, f"attention mass farther than L = {block_size}", "magma")):
            grid = values.reshape(n_heads, len(lengths))  # (layer * head, length)
            im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap)
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.0f}" if values is dist else f"{v:.2f}", ha="center", va="center",
                            fontsize=6, color="white" if v < np.nanmax(grid) * 0.6 else "black")
            ax.set_xticks(range(len(lengths)), [str(T) for T in lengths])
            n_head = values.shape[1]
            ax.set_yticks(range(n_heads), [f"{i // n_head}.{i % n_head}" for i in range(n_heads)], fontsize=6)
            ax.set_xlabel("evaluation length")
            ax.set_ylabel("layer.head")
            ax.set_title(f"{lbl}: {title}", fontsize=9)
            fig.colorbar(im, ax=ax)
    return _save(fig, path)
