"""torchrun with 2 CPU processes (gloo) trains like 1 process at the same global batch.

One process runs 2 accumulation micro-steps of 2 sequences; two processes run 1 micro-step each,
on the same windows (global micro-batch g = rank * accum + micro). The gradients are the same
sums in a different order, so the losses agree to float32 rounding: |difference| <= 1e-5 at every
step (observed: at most 5e-7, one float32 ulp at a loss of 10.8), and the final weights to 1e-5.
"""

import subprocess
import sys

import pytest
import torch
from train_helpers import ROOT, TINY, run_train, sample_data, subprocess_env  # noqa: F401

from training.checkpoint import CKPT_LAST, load_checkpoint
from training.metrics import read_metrics

STEPS = 6
RUN = [*TINY, "train.batch_size=2", "train.global_batch_size=4", f"train.max_steps={STEPS}",
       "train.log_interval=1", "train.eval_interval=3", "train.lr=3e-3", "pos=alibi"]


def losses(run_dir, kind="train", key="loss"):
    return {e["step"]: e[key] for e in read_metrics(run_dir) if e["event"] == kind}


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, sample_data):  # noqa: F811
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_train(*RUN, *sample_data, f"out_dir={single}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *RUN, *sample_data, f"out_dir={ddp}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout}\n{proc.stderr}"

    start = next(e for e in read_metrics(ddp) if e["event"] == "start")
    assert (start["world_size"], start["grad_accum"]) == (2, 1)
    assert next(e for e in read_metrics(single) if e["event"] == "start")["grad_accum"] == 2
    a, b = losses(single), losses(ddp)
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    assert a[1] != a[STEPS]  # it trained
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-5, (step, a[step], b[step])
    va, vb = losses(single, "eval", "val_loss"), losses(ddp, "eval", "val_loss")
    assert va.keys() == vb.keys() and all(abs(va[s] - vb[s]) <= 1e-5 for s in va)
    wa = load_checkpoint(single / CKPT_LAST)["model"]
    wb = load_checkpoint(ddp / CKPT_LAST)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-5)
    ckpt = load_checkpoint(ddp / CKPT_LAST, required=("rng",))
    assert len(ckpt["rng"]) == 2  # each process's generators, for an exact resume
