"""The report's lines on which code made its numbers: the commit that trained each run (the "code"
of every "start" event in metrics.jsonl: a resumed run has several), evaluated it (eval.json) and
sampled it (samples.json), and the commit that wrote the report. Mixed commits get a line that
says which runs came from which; uncommitted code gets a warning at the top."""

from __future__ import annotations

from typing import Optional

from evaluation.runs import RunRecord
from training.provenance import describe

UNKNOWN = "unknown (not recorded)"


def _name(code: Optional[dict]) -> str:
    return UNKNOWN if code is None else describe(code)


def stage_codes(rec: RunRecord) -> dict[str, list[str]]:
    """stage -> the code versions (described) of that stage of one run."""
    trained = list(dict.fromkeys(_name(e.get("code")) for e in rec.events if e["event"] == "start"))
    stages = {"trained": trained or [UNKNOWN]}
    if rec.eval is not None:
        stages["evaluated"] = [_name(rec.eval.get("code"))]
    if rec.samples is not None:
        stages["sampled"] = [_name(rec.samples.get("code"))]
    return stages


def _is_clean(name: str) -> bool:
    return name != UNKNOWN and not name.endswith("uncommitted changes") and not name.startswith("unknown")


def code_lines(records: list[RunRecord], report_code: dict) -> tuple[Optional[str], str]:
    """(a warning for the top of the report, or None; the line naming the code)."""
    written = describe(report_code)
    by_stage: dict[str, dict[str, list[str]]] = {}  # stage -> code -> runs
    for rec in records:
        for stage, names in stage_codes(rec).items():
            for name in names:
                by_stage.setdefault(stage, {}).setdefault(name, []).append(rec.run_dir.name)
    every = {written} | {name for codes in by_stage.values() for name in codes}
    warning = None
    if not all(_is_clean(n) for n in every):
        bad = sorted(n for n in every if not _is_clean(n))
        warning = (f"> **Warning: not made from committed code** ({', '.join(f'`{n}`' for n in bad)}): the code "
                   "behind some of these numbers is in no commit, so they cannot be reproduced from the repository.")
    if len(every) == 1:
        return warning, (f"Code: every run was trained, evaluated and sampled, and this report written, at commit "
                         f"`{written}`.")
    stages = []
    for stage, codes in by_stage.items():
        if len(codes) == 1:
            stages.append(f"{stage} at `{next(iter(codes))}` (all runs)")
        else:
            stages.append(f"{stage} at " + " and ".join(f"`{c}` ({', '.join(runs)})" for c, runs in codes.items()))
    return warning, ("**Code: these numbers come from more than one version of the code.** Runs were "
                     + "; ".join(stages) + f"; this report was written at `{written}`.")
