"""The files of one training run that the report is built from, and their aggregation over seeds.

A run directory holds config.yaml and metrics.jsonl (written by training/run.py), eval.json
(evaluation/extrapolation.py via compare.py or evaluate.py) and samples.json (evaluation/samples.py).
The report reads only these files, so it can be rebuilt, and checked, from them alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import OmegaConf

from evaluation.stats import half_width
from training.metrics import read_metrics

EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.json"


@dataclass
class RunRecord:
    encoding: str
    seed: int
    run_dir: Path
    config: dict  # the resolved TrainJob (config.yaml)
    events: list[dict]  # metrics.jsonl
    eval: Optional[dict]  # eval.json
    samples: Optional[dict]  # samples.json

    @property
    def summary(self) -> dict:
        found = [e for e in self.events if e["event"] == "summary"]
        if not found:
            raise ValueError(f"{self.run_dir}/metrics.jsonl has no summary event: the run did not finish")
        return found[-1]


def read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def load_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    return RunRecord(
        encoding=config["pos"]["name"],
        seed=config["seed"],
        run_dir=run_dir,
        config=config,
        events=read_metrics(run_dir),
        eval=read_json(run_dir / EVAL_FILE),
        samples=read_json(run_dir / SAMPLES_FILE),
    )


def by_encoding(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """encoding -> its runs (seeds), in the order the encodings first appear."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.encoding, []).append(r)
    return groups


def label(encoding: str, variant: Optional[str], evaluation: dict) -> str:
    """Row name: the encoding, with the variant appended unless it is the trained model (the
    first of the encoding's variants, as recorded in its eval.json)."""
    base = (evaluation.get("variants") or [None])[0]
    return encoding if variant in (None, base) else f"{encoding} + {variant}"


def variant_notes(runs: dict[str, list[RunRecord]]) -> list[tuple[str, str]]:
    """(row label, what the variant does) for every variant row, from each encoding's first
    eval.json that records its notes (the trained rows left out)."""
    notes = []
    for encoding, recs in runs.items():
        ev = next((r.eval for r in recs if r.eval is not None and "variant_notes" in r.eval), None)
        for variant, note in (ev or {}).get("variant_notes", {}).items():
            if label(encoding, variant, ev) != encoding:
                notes.append((label(encoding, variant, ev), note))
    return notes


@dataclass
class Cell:
    """One table cell over seeds: the values, or a note when the model could not be evaluated."""

    values: list[float]
    note: Optional[str] = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def half(self) -> Optional[float]:
        """Half-width of the 95% Student t interval of the mean over seeds (None for one seed)."""
        return half_width(self.values)

    def separated_from(self, other: "Cell") -> bool:
        """Both measured over 2+ seeds and their 95% intervals do not overlap."""
        if self.half is None or other.half is None or self.note is not None or other.note is not None:
            return False
        return abs(self.mean - other.mean) > self.half + other.half


def ppl_rows(runs: dict[str, list[RunRecord]], set_name: str, protocol: str) -> list[tuple[str, dict[int, Cell]]]:
    """(row label, {length: Cell}) per encoding and variant, from each run's eval.json."""
    rows = []
    for encoding, recs in runs.items():
        evals = [r.eval for r in recs if r.eval is not None]
        if not evals or set_name not in evals[0]["sets"]:
            continue
        variants = []
        for row in evals[0]["sets"][set_name]["rows"]:
            if row["protocol"] == protocol and row["variant"] not in variants:
                variants.append(row["variant"])
        for variant in variants:
            cells: dict[int, Cell] = {}
            for ev in evals:
                for row in ev["sets"][set_name]["rows"]:
                    if row["protocol"] != protocol or row["variant"] != variant:
                        continue
                    cell = cells.setdefault(row["length"], Cell([]))
                    if row["ppl"] is None:
                        cell.note = row["note"]
                    else:
                        cell.values.append(row["ppl"])
            rows.append((label(encoding, variant, evals[0]), cells))
    return rows


def position_curves(runs: dict[str, list[RunRecord]], set_name: str) -> list[tuple[str, int, np.ndarray, int]]:
    """(row label, window length, mean loss per position over seeds, seeds) per encoding and variant."""
    curves = []
    for encoding, recs in runs.items():
        found: dict = {}
        evaluated = [r for r in recs if r.eval is not None and set_name in r.eval["sets"]]
        for r in evaluated:
            for c in r.eval["sets"][set_name]["position_loss"]:
                found.setdefault(c["variant"], []).append(np.asarray(c["loss"], dtype=float))
        for variant, arrays in found.items():
            curves.append((label(encoding, variant, evaluated[0].eval), len(arrays[0]), np.mean(arrays, axis=0), len(arrays)))
    return curves


def loss_curves(recs: list[RunRecord], event: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, mean over seeds of `key`) of the `event` lines, at the steps every seed logged."""
    per_seed = [{e["step"]: (e["tokens"], e[key]) for e in r.events if e["event"] == event and e.get(key) is not None}
                for r in recs]
    steps = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    tokens = np.array([per_seed[0][s][0] for s in steps], dtype=float)
    values = np.array([np.mean([d[s][1] for d in per_seed]) for s in steps], dtype=float)
    return tokens, values
