"""resume=true continues exactly: SIGKILL a training subprocess after a checkpoint, resume it, and
get bitwise the per-step losses (and final weights) of an uninterrupted run, on CPU."""

import json
import signal
import subprocess
import time

import pytest
import torch
from train_helpers import ROOT, TINY, run_train, sample_data, subprocess_env, train_cmd  # noqa: F401

from training.checkpoint import CKPT_LAST, load_checkpoint
from training.metrics import read_metrics

# Dropout on, so the restored torch generator matters; a checkpoint every 4 of 24 steps.
STEPS = 24
RUN = [*TINY, "model.dropout=0.1", f"train.max_steps={STEPS}", "train.log_interval=1",
       "train.ckpt_interval=4", "train.eval_interval=6", "pos=rope"]


def steps_logged(path) -> int:
    """The last train step in a metrics.jsonl being written (0 if none yet)."""
    if not path.is_file():
        return 0
    last = 0
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event["event"] == "train":
            last = event["step"]
    return last


def by_step(events, kind, keys):
    return {e["step"]: tuple(e[k] for k in keys) for e in events if e["event"] == kind}


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise(tmp_path, sample_data):  # noqa: F811
    ref_dir, cut_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    ref_out = run_train(*RUN, *sample_data, "final_sample_tokens=8", f"out_dir={ref_dir}").stdout

    proc = subprocess.Popen(train_cmd(*RUN, *sample_data, "final_sample_tokens=8", f"out_dir={cut_dir}"), cwd=ROOT,
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    # Kill once a checkpoint exists and the run has gone on past it (work that must be redone).
    while not ((cut_dir / CKPT_LAST).is_file() and steps_logged(cut_dir / "metrics.jsonl") >= 6):
        assert proc.poll() is None, f"training ended before it could be killed:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    proc.stderr.close()
    killed_at = steps_logged(cut_dir / "metrics.jsonl")
    saved_step = load_checkpoint(cut_dir / CKPT_LAST, required=("step",))["step"]
    assert 4 <= saved_step < STEPS, saved_step

    out = run_train(*RUN, *sample_data, "final_sample_tokens=8", f"out_dir={cut_dir}", "resume=true")
    assert f"resuming at step {saved_step}" in out.stdout
    story = ref_out.split("sample from the best checkpoint (final_sample_tokens=8; 0: none):\n")[1]
    assert story.startswith("Once upon a time") and out.stdout.endswith(story)  # the same weights, the same story

    ref, resumed = read_metrics(ref_dir), read_metrics(cut_dir)
    keys = ("loss", "lr", "grad_norm", "tokens")
    ref_train, resumed_train = by_step(ref, "train", keys), by_step(resumed, "train", keys)
    assert sorted(ref_train) == list(range(1, STEPS + 1))
    assert resumed_train == ref_train  # every step, bitwise (floats as written by json)
    assert by_step(resumed, "eval", ["val_loss"]) == by_step(ref, "eval", ["val_loss"])
    starts = [e for e in resumed if e["event"] == "start"]
    assert [s["resumed"] for s in starts] == [False, True] and starts[1]["step"] == saved_step
    assert [e["step"] for e in resumed if e["event"] == "summary"] == [STEPS]
    assert killed_at > saved_step  # the steps after the checkpoint were really redone

    a = load_checkpoint(ref_dir / CKPT_LAST)["model"]
    b = load_checkpoint(cut_dir / CKPT_LAST)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
