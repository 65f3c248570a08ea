"""metrics.jsonl: one JSON object per line, one line per event, appended as training goes.

Events (every line has "event" and "step", the number of optimizer steps done):

    start    step, resumed (bool), world_size, grad_accum, tokens_per_step, device, dtype,
             params {"embedding", "non_embedding", "total"}, code {"commit", "dirty"} (the git
             state of the code that trained from here on, training/provenance.py)
    train    step, loss (train loss of that step: mean over its global batch), lr (used for it),
             grad_norm (before clipping), tokens (seen so far), tokens_per_s (since the last
             train event), elapsed_s, and mfu on CUDA
    eval     step, val_loss, best_val_loss, tokens, elapsed_s
    summary  step, tokens, best_val_loss, best_step, final_val_loss, wall_s, tokens_per_s,
             stopped_early, params

On resume the lines written after the checkpoint (by the run that was interrupted) are dropped,
so the file reads like the log of one uninterrupted run (plus a second "start" event).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Keep only the events of steps <= `step` (no summary): the state a checkpoint holds."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if event.get("event") != "summary" and event.get("step", 0) <= step:
                kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, event: str, step: int, **fields) -> None:
        if not self.enabled:
            return
        record = {"event": event, "step": step, **{k: _jsonable(v) for k, v in fields.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _jsonable(v):
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read_metrics(path: str | Path) -> list[dict]:
    """The events of a metrics.jsonl file (or of <run dir>/metrics.jsonl)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
