"""Helpers shared by the benchmark scripts: device and thread setup, interleaved timing with
medians, the machine/version line every recorded figure carries, and markdown tables.

Timing is interleaved: every repetition runs each contender once, in a rotated order, so a burst
of load from another process on a shared machine hits all contenders alike instead of one of them.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional

import torch

from training.cpu_memory import keep_freed_memory

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Dense (no sparsity) peak of one GPU in FLOP/s for the MFU column, by dtype.
_HOPPER = {torch.bfloat16: 989e12, torch.float16: 989e12, torch.float32: 67e12}
PEAK_FLOPS = {"H100": _HOPPER, "H200": _HOPPER}


def setup(
    device: str, threads: Optional[int], seed: int = 0, malloc: str = "keep", tf32: bool = False
) -> torch.device:
    """Pick the device (an unavailable CUDA is an error, not a silent CPU run), the thread count,
    the allocator policy (`malloc="keep"`: see keep_freed_memory) and TF32 matmuls on CUDA."""
    if malloc == "keep":
        keep_freed_memory()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    if threads is not None:
        torch.set_num_threads(threads)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(seed)
    return dev


def allow_recompiles(count: int) -> None:
    """Let dynamo keep `count` compiled versions of one function. Every contender compiled through
    the same Python function (one closure per contender) is a new version of that function's
    code, and past dynamo's default of 8 the rest would silently run eager."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, count)


def warm_up(
    make: dict[str, Callable[[], Callable[[], object]]],
    warmup: int,
    device: torch.device,
    time_limit: Optional[float] = None,
    keep: bool = True,
) -> dict[str, Callable[[], object]]:
    """Build each contender (`make[name]()` returns its zero-argument call) and run it `warmup`
    times (torch.compile compiles in the first), printing how long that took. A contender whose
    turn comes after `time_limit` seconds is left out (and said so), so a time-boxed run still
    times the others. `keep=False` drops each call once warm (a run that only fills the compile
    caches for a later process). Returns the warm calls."""
    start = time.perf_counter()
    ready = {}
    for name, build in make.items():
        if time_limit is not None and time.perf_counter() - start > time_limit:
            print(f"warm-up: {name} left out (past --time-limit {time_limit:.0f} s)", flush=True)
            continue
        t = time.perf_counter()
        fn = build()
        for _ in range(warmup):
            fn()
        synchronize(device)
        print(f"warm-up: {name} ready in {time.perf_counter() - t:.1f} s", flush=True)
        if keep:
            ready[name] = fn
        else:
            del fn
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return ready


def add_time_arguments(p) -> None:
    """--time-limit and --compile-only, as `warm_up` takes them."""
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds for building and warming up contenders; those not reached are left out")
    p.add_argument("--compile-only", action="store_true",
                   help="build and warm up every contender, time nothing (fills torch.compile's caches on "
                        "disk, so that a later process compiles from them; bench/gpu_suite.py runs these in parallel)")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timings:
    """Per-call seconds of each contender on two clocks: wall (perf_counter) and CPU
    (process_time, the CPU time of this whole process). With one thread on a CPU shared with other
    jobs, CPU time is the steadier measure: time spent descheduled does not count."""

    def __init__(self, names: list[str]):
        self.wall: dict[str, list[float]] = {name: [] for name in names}
        self.cpu: dict[str, list[float]] = {name: [] for name in names}

    def on(self, clock: str) -> dict[str, list[float]]:
        return self.wall if clock == "wall" else self.cpu


def time_interleaved(
    fns: dict[str, Callable[[], object]], reps: int, warmup: int, device: torch.device
) -> Timings:
    """Time each fn: `warmup` untimed calls each, then `reps` rounds in which every fn runs once,
    the order rotated by one each round."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    synchronize(device)
    timings = Timings(names)
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            fns[name]()
            synchronize(device)
            timings.wall[name].append(time.perf_counter() - wall)
            timings.cpu[name].append(time.process_time() - cpu)
    return timings


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """Relative spread of repeated timings: (max - min) / median, as a percentage."""
    return f"{100 * (max(xs) - min(xs)) / median(xs):.0f}%"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_line(device: torch.device) -> str:
    """One line naming the hardware, thread count and library versions behind a measurement."""
    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        import os

        hw = f"{cpu_name()} ({os.cpu_count()} logical CPUs)"
    return (
        f"{hw}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {_version('transformers')}, x-transformers {_version('x-transformers')}, "
        f"Python {platform.python_version()}"
    )


def peak_flops(device: torch.device, dtype: torch.dtype) -> Optional[float]:
    """Dense peak FLOP/s of a known GPU (None on CPU or an unknown GPU: no MFU column then)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, table in PEAK_FLOPS.items():
        if key in name:
            return table.get(dtype)
    return None


MATMUL_N = 1024  # size of the square sgemm whose best time gives the CPU peak


def matmul_peak(device: torch.device, clock: str = "wall", reps: int = 10, n: int = MATMUL_N) -> float:
    """The machine's practical fp32 matmul peak in FLOP/s with the current thread count: the best
    of `reps` (n x n) @ (n x n) products (2 n^3 FLOPs each) after one warm-up, on `clock` (wall:
    perf_counter; cpu: this process's CPU time, which a shared machine's load does not inflate)."""
    now = time.perf_counter if clock == "wall" else time.process_time
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        synchronize(device)
        t = now()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, now() - t)
    return 2 * n**3 / best


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    return "python " + " ".join(sys.argv)
