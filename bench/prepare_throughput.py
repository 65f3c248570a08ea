"""Tokens per second of the whole prepare step (read, tokenize, write) against a plain loop.

    python bench/prepare_throughput.py                 # the embedded corpus (data=tinystories_local)
    python bench/prepare_throughput.py --repeat 10     # the same stories 10 times: a larger corpus

Every method goes from the .txt files to train.bin / val.bin, and every method's files must equal
the plain loop's byte for byte:
- plain:    one process, `enc.encode_ordinary` per story, the baseline of issue 4 (appending
            to an array('H'), the fastest plain accumulation measured);
- threads:  tiktoken's `encode_ordinary_batch(num_threads=cores)`;
- ds.map:   `datasets.Dataset.map(batched=True, num_proc=cores)`;
- prepare:  data.prepare.prepare(force=True), the project's pipeline (a forked process pool over
            chunks of stories), including its fingerprint, checks and meta.json.
Methods run interleaved, `--rounds` times in a rotated order; the table gives the median and the
best round of the wall clock, and the CPU seconds of all the processes a method used (the
parallel methods' overhead: on a machine shared with other jobs, wall times vary, CPU time less).
"""

from __future__ import annotations

import argparse
import array
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ROOT / "data" / "tinystories"  # train.txt.xz, valid.txt.xz
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars inside the timings

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import tiktoken  # noqa: E402

from data.config import DataConfig  # noqa: E402
from data.encode import get_tokenizer, num_workers  # noqa: E402
from data.prepare import prepare  # noqa: E402
from data.sources import read_text, split_stories  # noqa: E402

SPLIT_FILES = {"train": "train.txt", "val": "valid.txt"}


def read_stories(folder: Path) -> dict[str, list[str]]:
    return {s: split_stories((folder / f).read_text(encoding="utf-8")) for s, f in SPLIT_FILES.items()}


def write_bins(out: Path, ids: dict[str, np.ndarray]) -> int:
    for split, arr in ids.items():
        arr.astype(np.uint16).tofile(out / f"{split}.bin")
    return sum(len(a) for a in ids.values())


def concat(encoded, eot: int) -> np.ndarray:
    """Token lists -> one uint16 array with `eot` after each (array('H') appends at C speed)."""
    ids = array.array("H")
    for story in encoded:
        ids.extend(story)
        ids.append(eot)
    return np.frombuffer(ids, dtype=np.uint16)


def plain(src: Path, out: Path, enc, workers: int) -> int:
    ids = {}
    for split, stories in read_stories(src).items():
        ids[split] = concat((enc.encode_ordinary(story) for story in stories), enc.eot_token)
    return write_bins(out, ids)


def threads(src: Path, out: Path, enc, workers: int) -> int:
    ids = {}
    for split, stories in read_stories(src).items():
        ids[split] = concat(enc.encode_ordinary_batch(stories, num_threads=workers), enc.eot_token)
    return write_bins(out, ids)


def _map_batch(batch: dict, enc=None) -> dict:
    return {"ids": [enc.encode_ordinary(t) for t in batch["text"]]}


def ds_map(src: Path, out: Path, enc, workers: int) -> int:
    ids = {}
    for split, stories in read_stories(src).items():
        ds = datasets.Dataset.from_dict({"text": stories})
        mapped = ds.map(
            _map_batch, batched=True, num_proc=workers, remove_columns=["text"], fn_kwargs={"enc": enc}
        )
        ids[split] = concat(mapped["ids"], enc.eot_token)
    return write_bins(out, ids)


def pipeline(src: Path, out: Path, enc, workers: int) -> int:
    cfg = DataConfig(
        train_files=[str(src / SPLIT_FILES["train"])], val_files=[str(src / SPLIT_FILES["val"])],
        cache_dir=str(out), num_proc=workers,
    )
    meta = prepare(cfg, force=True)
    return sum(c["tokens"] for c in meta["splits"].values())


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


METHODS = {"plain": plain, "threads": threads, "ds.map": ds_map, "prepare": pipeline}


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()
    return (
        f"{cpu}, {num_workers(0)} cores available; Python {platform.python_version()}, "
        f"tiktoken {tiktoken.__version__}, datasets {datasets.__version__}, numpy {np.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=None,
                        help="folder with train.txt and valid.txt (default: the embedded data/tinystories, "
                             "decompressed into a temporary folder first)")
    parser.add_argument("--repeat", type=int, default=1, help="use the stories this many times")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    datasets.disable_progress_bars()
    datasets.disable_caching()
    workers = num_workers(0)
    enc = get_tokenizer("gpt2")
    enc.encode_ordinary("warm up")

    with tempfile.TemporaryDirectory(prefix="prepare-bench-") as tmp:
        base = args.src
        if base is None:  # the embedded corpus, as plain .txt files for the methods that read them
            base = Path(tmp) / "embedded"
            base.mkdir()
            for name in SPLIT_FILES.values():
                (base / name).write_text(read_text(EMBEDDED / f"{name}.xz", "--src"), encoding="utf-8")
        src = base
        if args.repeat > 1:  # a larger corpus: the same files, concatenated
            src = Path(tmp) / "src"
            src.mkdir()
            for name in SPLIT_FILES.values():
                (src / name).write_text((base / name).read_text(encoding="utf-8") * args.repeat)
        times: dict[str, list[float]] = {m: [] for m in args.methods}
        cpu: dict[str, list[float]] = {m: [] for m in args.methods}
        tokens: dict[str, int] = {}
        load = os.getloadavg()[0]
        for r in range(args.rounds):
            shift = r % len(args.methods)  # rotate the order: a burst of load hits every method
            for name in args.methods[shift:] + args.methods[:shift]:
                out = Path(tmp) / name
                out.mkdir(exist_ok=True)
                c0, t0 = cpu_seconds(), time.perf_counter()
                tokens[name] = METHODS[name](src, out, enc, workers)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(cpu_seconds() - c0)
        reference = {s: (Path(tmp) / args.methods[0] / f"{s}.bin").read_bytes() for s in SPLIT_FILES}
        for name in args.methods:
            for s in SPLIT_FILES:
                assert (Path(tmp) / name / f"{s}.bin").read_bytes() == reference[s], f"{name} {s}.bin differs"

    print(f"machine: {machine()}")
    print(f"corpus: {args.src or EMBEDDED} x{args.repeat}, {tokens[args.methods[0]]:,} tokens (train + val); "
          f"{args.rounds} rounds; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    base = statistics.median(times[args.methods[0]])
    print(f"\n| method | processes | wall s (median) | Mtok/s (median) | Mtok/s (best) | "
          f"vs {args.methods[0]} (median) | CPU s (median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.methods:
        med, best = statistics.median(times[name]), min(times[name])
        n = tokens[name] / 1e6
        procs = 1 if name == "plain" else workers
        print(f"| {name} | {procs} | {med:.3f} | {n / med:.2f} | {n / best:.2f} | {base / med:.2f}x | "
              f"{statistics.median(cpu[name]):.3f} |")


if __name__ == "__main__":
    main()
