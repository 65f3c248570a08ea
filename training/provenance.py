"""Which code made a file: the git commit of the project, and whether its code differed from it.

The committed reports under report/ are outputs, not code, so changes there do not make the tree
"dirty" (a report is written, then committed, after its runs were trained from clean code).
"""

from __future__ import annotations

import subprocess

from data.config import ROOT

OUTPUT_DIRS = ("report",)  # folders of results whose changes do not count as changed code


def code_version() -> dict:
    """{"commit": full hash of HEAD or None outside a git checkout, "dirty": tracked files outside
    OUTPUT_DIRS differ from it}."""
    try:
        head = _git("rev-parse", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                       *(f":(exclude){d}" for d in OUTPUT_DIRS))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": False}
    return {"commit": head, "dirty": bool(changed)}


def describe(version: dict) -> str:
    """`abc1234`, `abc1234 + uncommitted changes`, or `unknown (not a git checkout)`."""
    if not version or version.get("commit") is None:
        return "unknown (not a git checkout)"
    return version["commit"][:7] + (" + uncommitted changes" if version["dirty"] else "")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
