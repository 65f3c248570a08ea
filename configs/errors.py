"""One error path for every entry point: a user error is one line on stderr and a non-zero exit.

    @hydra.main(...)
    def main(cfg):
        with user_errors():
            ...

Bad options, missing or unreadable files, checkpoints that do not fit and refused plans are raised
as `ValueError` (DataError and CompareError are ValueErrors), `CheckpointError` or `OSError`
(whose message names the file); each prints as `error: <message>` and exits with status 1.
A training run stopped by Ctrl-C or SIGTERM has saved a checkpoint and says how to resume; it exits
with 128 + the signal number, as a shell does. HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Iterator

from training.checkpoint import CheckpointError
from training.signals import TrainingInterrupted

USER_ERRORS = (ValueError, CheckpointError, OSError)


def one_line(e: BaseException) -> str:
    """The message on one line (omegaconf's validation errors span several)."""
    return "; ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except USER_ERRORS as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"error: {one_line(e)}")
