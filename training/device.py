"""Which device and how many CPU threads: one `resolve_device` for every entry point."""

from __future__ import annotations

import torch

# CPU threads by default: one. On the shared 2-core build machine one thread trained faster than
# two (bench/RESULTS.md, "Threads"); on an idle machine with more cores set threads=0 (one per
# core) or the core count.
THREADS = 1


def resolve_device(name: str, option: str = "device", local_rank: int = 0) -> torch.device:
    """`auto`: cuda (cuda:LOCAL_RANK) when CUDA is available, else cpu; `cuda` also picks
    LOCAL_RANK. A device this machine does not have is a ValueError that names `option`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"{option}={name}: not a device ({e}); use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option}={name}: CUDA is not available on this machine; use {option}=cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"{option}={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"{option}={name}: only cpu and cuda are supported")
    return device


def set_threads(threads: int, option: str = "threads") -> None:
    """torch.set_num_threads(threads) for CPU work; 0 keeps torch's own choice (OMP_NUM_THREADS,
    else one thread per core). Process-wide, and undone only by another call."""
    if threads < 0:
        raise ValueError(f"{option}={threads}: must be >= 0 (0: torch's default, one per core)")
    if threads > 0:
        torch.set_num_threads(threads)
