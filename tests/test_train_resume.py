"""resume=true continues exactly: SIGKILL a training subprocess after a checkpoint (or stop it with
SIGINT / SIGTERM, which save the current step), resume it, and get bitwise the per-step losses
(and final weights) of an uninterrupted run, on CPU; also with randomized positions, whose draw is
part of each seeded batch."""

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
RANDOMIZED = [*RUN[:-1], "pos=learned", "pos.randomize_to=256"]


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


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sample_data):  # noqa: F811
    """The uninterrupted run."""
    ref_dir = tmp_path_factory.mktemp("uninterrupted")
    run_train(*RUN, *sample_data, f"out_dir={ref_dir}")
    return ref_dir


def past_a_checkpoint(step: int) -> bool:
    """A logged step after the first checkpoints that writes none itself (RUN checkpoints every 4
    steps and at a better evaluation, every 6): a run stopped now has steps to redo."""
    return step >= 6 and step % 4 != 0 and step % 6 != 0


def start_and_signal(cut_dir, sample_data, signum, run=RUN) -> subprocess.Popen:  # noqa: F811
    """Start a run and send it `signum` once a checkpoint exists and it has gone on past it."""
    proc = subprocess.Popen(train_cmd(*run, *sample_data, f"out_dir={cut_dir}"), cwd=ROOT,
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ((cut_dir / CKPT_LAST).is_file() and past_a_checkpoint(steps_logged(cut_dir / "metrics.jsonl"))):
        assert proc.poll() is None, f"training ended before it could be stopped:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.01)
    proc.send_signal(signum)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("randomized", [False, True])
def test_resume_after_sigkill_is_bitwise(tmp_path, reference, sample_data, randomized):  # noqa: F811
    run = RANDOMIZED if randomized else RUN
    if randomized:  # its own uninterrupted run
        reference = tmp_path / "uninterrupted"
        run_train(*run, *sample_data, f"out_dir={reference}")
    cut_dir = tmp_path / "killed"
    proc = start_and_signal(cut_dir, sample_data, signal.SIGKILL, run)
    assert proc.wait() == -signal.SIGKILL
    proc.stderr.close()
    killed_at = steps_logged(cut_dir / "metrics.jsonl")
    saved_step = load_checkpoint(cut_dir / CKPT_LAST, required=("step",))["step"]
    assert 4 <= saved_step < STEPS, saved_step
    assert killed_at > saved_step  # the steps after the checkpoint are really redone
    check_resume_is_bitwise(reference, cut_dir, saved_step, sample_data, run)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_the_current_step(tmp_path, reference, sample_data, signum):  # noqa: F811
    """Ctrl-C or SIGTERM: the run saves a checkpoint of the step it was at (not the last
    ckpt_interval), says how to resume in one line, exits with 128 + the signal; the resume then
    equals the uninterrupted run."""
    cut_dir = tmp_path / "stopped"
    proc = start_and_signal(cut_dir, sample_data, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    saved_step = load_checkpoint(cut_dir / CKPT_LAST, required=("step",))["step"]
    assert saved_step == steps_logged(cut_dir / "metrics.jsonl")  # nothing trained is lost
    assert 6 <= saved_step < STEPS
    name = signal.Signals(signum).name
    assert f"stopped by {name} at step {saved_step}: saved {cut_dir / CKPT_LAST}" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not any(e["event"] == "summary" for e in read_metrics(cut_dir))
    check_resume_is_bitwise(reference, cut_dir, saved_step, sample_data)


def check_resume_is_bitwise(ref_dir, cut_dir, saved_step, sample_data, run=RUN) -> None:  # noqa: F811
    out = run_train(*run, *sample_data, f"out_dir={cut_dir}", "resume=true")
    assert f"resuming at step {saved_step}" in out.stdout

    ref, resumed = read_metrics(ref_dir), read_metrics(cut_dir)
    keys = ("loss", "lr", "grad_norm", "tokens")
    ref_train, resumed_train = by_step(ref, "train", keys), by_step(resumed, "train", keys)
    assert sorted(ref_train) == list(range(1, STEPS + 1))
    assert resumed_train == ref_train  # every step, bitwise (floats as written by json)
    assert by_step(resumed, "eval", ["val_loss"]) == by_step(ref, "eval", ["val_loss"])
    starts = [e for e in resumed if e["event"] == "start"]
    assert [s["resumed"] for s in starts] == [False, True] and starts[1]["step"] == saved_step
    assert [e["step"] for e in resumed if e["event"] == "summary"] == [STEPS]

    a = load_checkpoint(ref_dir / CKPT_LAST)["model"]
    b = load_checkpoint(cut_dir / CKPT_LAST)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
