"""The probes' results of every run (eval.json's "probes"), per row label and pooled over seeds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from evaluation.probes.repeat import usable_context
from evaluation.probes.stats import mean_ci
from evaluation.runs import RunRecord, label


def variant_label(runs: dict[str, list[RunRecord]], enc: str, variant) -> str:
    """The row label of `variant` of encoding `enc`, as the perplexity tables name it."""
    evaluation = next(r.eval for r in runs[enc] if r.eval)
    return label(enc, variant, evaluation)


def probe_records(runs: dict[str, list[RunRecord]], probe: str) -> dict[str, list[dict]]:
    """encoding -> the `probe` results of its seeds (runs without them left out)."""
    found = {}
    for enc, recs in runs.items():
        got = [r.eval["probes"][probe] for r in recs if r.eval and probe in r.eval.get("probes", {})]
        if got:
            found[enc] = got
    return found


@dataclass
class RepeatCurve:
    """One row label on one set: per distance the gain over spans (seed-averaged per span)."""

    label: str
    distances: list[int]
    gain: list[Optional[float]]
    low: list[Optional[float]]
    high: list[Optional[float]]
    notes: list[Optional[str]]
    seeds: int

    @property
    def usable(self) -> tuple[Optional[int], Optional[int]]:
        fitted = [(d, lo) for d, lo, n in zip(self.distances, self.low, self.notes) if n is None]
        return usable_context([d for d, _ in fitted], [lo for _, lo in fitted])


def repeat_curves(runs: dict[str, list[RunRecord]], set_name: str) -> list[RepeatCurve]:
    """Every seed probes the same spans, so each span's gain is averaged over seeds first and the
    interval is over spans."""
    curves = []
    for enc, results in probe_records(runs, "repeat").items():
        sets = [r["sets"][set_name] for r in results if set_name in r["sets"]]
        if not sets:
            continue
        distances = results[0]["distances"]
        for i, v in enumerate(sets[0]["variants"]):
            gain, low, high, notes = [], [], [], []
            for j, row in enumerate(v["rows"]):
                if row["note"] is not None:
                    gain.append(None), low.append(None), high.append(None), notes.append(row["note"])
                    continue
                per_span = np.mean([s["variants"][i]["rows"][j]["gains"] for s in sets], axis=0)
                m, lo, hi = mean_ci(per_span)
                gain.append(m), low.append(lo), high.append(hi), notes.append(None)
            curves.append(RepeatCurve(variant_label(runs, enc, v["variant"]), distances, gain, low, high, notes, len(sets)))
    return curves


def retrieval_table(runs: dict[str, list[RunRecord]]) -> list[tuple[str, dict[int, dict]]]:
    """(row label, {length: {"accuracy", "mean_rank", "prob", "note"}}), averaged over depths and seeds."""
    out = []
    for enc, results in probe_records(runs, "retrieval").items():
        for i, v in enumerate(results[0]["variants"]):
            cells = {}
            for T in results[0]["lengths"]:
                rows = [row for r in results for row in r["variants"][i]["rows"] if row["length"] == T]
                ok = [row for row in rows if row["note"] is None]
                cells[T] = ({k: float(np.mean([row[k] for row in ok])) for k in ("accuracy", "mean_rank", "prob")}
                            | {"note": None}) if ok else {"note": rows[0]["note"]}
            out.append((variant_label(runs, enc, v["variant"]), cells))
    return out


def retrieval_by_depth(runs: dict[str, list[RunRecord]]) -> list[tuple[str, dict[float, dict[int, float]]]]:
    """(row label, {depth: {length: the right word's share of the candidates' probability}})."""
    out = []
    for enc, results in probe_records(runs, "retrieval").items():
        for i, v in enumerate(results[0]["variants"]):
            by_depth: dict = {}
            for r in results:
                for row in r["variants"][i]["rows"]:
                    if row["note"] is None:
                        by_depth.setdefault(row["depth"], {}).setdefault(row["length"], []).append(row["prob"])
            out.append((variant_label(runs, enc, v["variant"]),
                        {d: {T: float(np.mean(p)) for T, p in c.items()} for d, c in by_depth.items()}))
    return out


def attention_maps(runs: dict[str, list[RunRecord]]) -> dict[str, list[tuple[str, list[int], np.ndarray, np.ndarray]]]:
    """encoding -> (row label, lengths, mean distance (layer, head, length), mass past L (same;
    NaN where no query has keys that far)), averaged over seeds."""
    out = {}
    for enc, results in probe_records(runs, "attention").items():
        maps = []
        for i, v in enumerate(results[0]["variants"]):
            dist = np.mean([r["variants"][i]["mean_distance"] for r in results], axis=0)
            far = np.mean([np.array(r["variants"][i]["far_mass"], dtype=float) for r in results], axis=0)
            maps.append((variant_label(runs, enc, v["variant"]), results[0]["lengths"], dist, far))
        out[enc] = maps
    return out
