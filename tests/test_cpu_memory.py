"""training/cpu_memory.py: with the policy on, a large freed block is reused without page faults."""

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import resource, sys, torch
from training.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
n = 64 << 20  # 256 MiB of float32
torch.ones(n)  # allocated, touched and freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(n)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def second_allocation_faults(policy: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, policy], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_kept_memory_is_reused_without_page_faults():
    pages = (256 << 20) // 4096
    assert second_allocation_faults("default") > pages // 2  # glibc unmapped it: faulted in again
    assert second_allocation_faults("keep") < pages // 20
