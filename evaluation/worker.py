"""One run of a comparison in its own process (compare.py jobs=N): train, evaluate, sample.

    python -m evaluation.worker REQUEST.yaml RESULT.json

REQUEST holds the run's TrainJob, status, eval and samples settings, device and thread count
(written by evaluation/parallel.py); RESULT receives the seconds per stage. Progress bars are off:
the output goes to the run's log file, and the parent prints one progress line across runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from evaluation.ablation import RunSpec, process_run
from evaluation.config import EvalConfig, SamplesConfig
from training.job import as_train_job


def main(request_path: str, result_path: str) -> None:
    req = OmegaConf.load(request_path)
    torch.set_num_threads(int(req.threads))
    job = as_train_job(req.job)
    job.train.progress = False
    spec = RunSpec(req.encoding, int(req.seed), Path(req.run_dir), job)
    eval_cfg = OmegaConf.merge(OmegaConf.structured(EvalConfig), req.eval)  # typed again, as in compare.py
    eval_cfg.progress = False
    samples = None if req.samples is None else OmegaConf.merge(OmegaConf.structured(SamplesConfig), req.samples)
    times = process_run(spec, req.status, eval_cfg, samples, req.device)
    Path(result_path).write_text(json.dumps(times))


if __name__ == "__main__":
    main(*sys.argv[1:])
