"""Stop a training run cleanly on Ctrl-C (SIGINT) or SIGTERM: finish the step, save, then stop.

The handler only sets a flag; the loop checks it after every optimizer step, writes ckpt_last.pt
(a checkpoint of that step, so a resume continues from exactly there, not from the last
`ckpt_interval`) and raises `TrainingInterrupted`, which the entry points print as one line. A
second signal while the first is being handled interrupts at once (KeyboardInterrupt): the
checkpoint write is atomic, so even then the previous checkpoint survives.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; the message says how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopFlag:
    """Which signal asked the run to stop (None until one did)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Within the block SIGINT and SIGTERM set the yielded flag instead of killing the process;
    the previous handlers come back on exit. Outside the main thread (where Python cannot install
    handlers) the flag is never set and signals act as before."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame) -> None:
        if flag:  # asked twice: stop now
            raise KeyboardInterrupt
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
