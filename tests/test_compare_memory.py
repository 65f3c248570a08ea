"""compare.py trains every encoding in one process with glibc keeping freed memory
(keep_freed_memory, process-wide): its peak RSS must stay that of one run, not grow per run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from train_helpers import ROOT, subprocess_env

# Runs compare.py as a child and prints the child's peak RSS in KiB.
PEAK = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); " \
       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def compare_peak_rss_mib(tmp_path, encodings: str) -> float:
    out = tmp_path / encodings.strip("[]").replace(",", "-")
    cmd = [sys.executable, "compare.py", "preset=smoke", "data=tinystories_sample", "eval.probes=[]", f"data.cache_dir={tmp_path}/cache",
           f"out_dir={out}/runs", f"report_dir={out}/report", f"eval.cache_dir={tmp_path}/eval_cache",
           "train.max_steps=2", "train.eval_interval=2", "train.eval_batches=1", "train.progress=false",
           "eval.multipliers=[1,2]", "eval.variants=[none,yarn]", "eval.progress=false",
           "~eval.sets.long_stories", "eval.sets.tinystories.files=[data/sample/valid.txt]",
           "eval.sets.tinystories.max_tokens=128", "samples.max_new_tokens=4", "samples.num_samples=1",
           f"encodings={encodings}"]
    proc = subprocess.run([sys.executable, "-c", PEAK, *cmd], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "report" / "report.md").is_file()
    return int(proc.stdout) / 1024


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_the_number_of_runs(tmp_path):
    # the heaviest of the three alone (t5: its bias-table gradient), so that the bound measures
    # growth with the number of runs, not the difference between encodings
    one = max(compare_peak_rss_mib(tmp_path, "[t5]"), compare_peak_rss_mib(tmp_path, "[rope]"))
    three = compare_peak_rss_mib(tmp_path, "[learned,t5,rope]")
    assert three < 1.2 * one, (one, three)  # measured: 819 MiB for one run, 882 MiB for all six
