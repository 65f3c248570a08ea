"""training/cpu_memory.py: with the policy on, glibc reuses a freed large block without page faults."""

import subprocess
import sys

from tests.conftest import ROOT

# malloc, touch and free 256 MiB through glibc itself, then count the page faults of two more cycles
PROBE = """
import ctypes, ctypes.util, resource, sys
from training.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
n = 256 << 20
def cycle():
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
cycle()
cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults_of_two_cycles(policy: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, policy], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_kept_memory_is_reused_without_page_faults():
    pages = 2 * (256 << 20) // 4096
    assert page_faults_of_two_cycles("default") > pages // 2  # glibc unmapped it: faulted in again
    assert page_faults_of_two_cycles("keep") < pages // 20
