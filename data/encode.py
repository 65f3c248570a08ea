"""Tokenizing: the tiktoken encoding, and a process pool that writes the splits' token files.

`encode_ordinary` per story, then the end-of-text id. A pool of forked processes (one per core)
encodes contiguous chunks of stories, and the parent appends the chunks in order. On this 2-core
machine that was the fastest of the options measured (bench/RESULTS.md): `datasets.map(num_proc=2)`
and tiktoken's threaded `encode_ordinary_batch` were both slower than the plain single-process loop.

Named encode.py, not tokenize.py: a script run from data/ has data/ first on sys.path, where a
tokenize.py would shadow the standard library's `tokenize` (which `datasets` imports).
"""

from __future__ import annotations

import array
import math
import multiprocessing
import os
from contextlib import contextmanager
from pathlib import Path

import datasets
import numpy as np
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str
from tqdm import tqdm

from data.tokens import META_FILE, TOKEN_DTYPE, DataError, split_file

GPT2_FILES = Path(__file__).resolve().parent / "gpt2_bpe"  # OpenAI's GPT-2 BPE files (MIT), see README
GPT2_HASHES = {  # the sha256 tiktoken checks (tiktoken_ext/openai_public.py)
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
_ENCODINGS: dict[str, tiktoken.Encoding] = {}  # per process, like tiktoken's own registry

MAX_CHUNK = 1024  # stories per task of the tokenizer pool
CHUNKS_PER_WORKER = 8  # at least this many tasks per process, for balance on small corpora


def get_tokenizer(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding `name`, checked to fit the uint16 token files. GPT-2's works offline:
    when tiktoken cannot download its files, it is built from the copies in data/gpt2_bpe/."""
    if name in _ENCODINGS:
        return _ENCODINGS[name]
    try:
        enc = tiktoken.get_encoding(name)
    except ValueError as e:  # an unknown name
        raise DataError(f"data.tokenizer={name}: {e}") from e
    except OSError as e:  # no network (requests' errors are OSErrors), or an unwritable cache
        if name != "gpt2":
            raise DataError(f"data.tokenizer={name}: tiktoken could not load its files ({type(e).__name__}: "
                            f"{e}); only gpt2 ships with this project (data/gpt2_bpe/)") from e
        enc = gpt2_from_files()
    limit = np.iinfo(TOKEN_DTYPE).max + 1
    if enc.n_vocab > limit:
        raise DataError(
            f"data.tokenizer={name}: its {enc.n_vocab} token ids do not fit the uint16 token files "
            f"(at most {limit}); use a tokenizer with a smaller vocabulary such as gpt2"
        )
    _ENCODINGS[name] = enc
    return enc


def gpt2_from_files(folder: Path = GPT2_FILES) -> tiktoken.Encoding:
    """tiktoken's `gpt2` encoding built from OpenAI's vocab.bpe and encoder.json in `folder`, as
    tiktoken_ext/openai_public.py builds it from the downloaded files."""
    with _tiktoken_cache_off():  # read the local files as they are; copy nothing into a cache
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(folder / "vocab.bpe"), encoder_json_file=str(folder / "encoder.json"),
            vocab_bpe_hash=GPT2_HASHES["vocab.bpe"], encoder_json_hash=GPT2_HASHES["encoder.json"],
        )
    return tiktoken.Encoding(name="gpt2", explicit_n_vocab=50257, pat_str=r50k_pat_str,
                             mergeable_ranks=ranks, special_tokens={ENDOFTEXT: 50256})


@contextmanager
def _tiktoken_cache_off():
    """TIKTOKEN_CACHE_DIR="" makes tiktoken read files directly (tiktoken/load.py, read_file_cached)."""
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


_WORK: dict = {}  # per process: the split datasets and the encoding (set by _init_worker)


def _init_worker(texts: dict[str, datasets.Dataset], tokenizer: str) -> None:
    _WORK.update(texts=texts, enc=get_tokenizer(tokenizer))


def _encode_range(task: tuple[str, int, int]) -> tuple[str, int, np.ndarray, int]:
    """Encode stories [start, stop) of one split: (split, stories read, ids, stories kept)."""
    split, start, stop = task
    enc = _WORK["enc"]
    ids = array.array("H")  # appends at C speed; the vocabulary check makes every id fit
    kept = 0
    for text in _WORK["texts"][split][start:stop]["text"]:
        if text and not text.isspace():  # an empty row is no story (no lone end-of-text)
            ids.extend(enc.encode_ordinary(text))
            ids.append(enc.eot_token)
            kept += 1
    return split, stop - start, np.frombuffer(ids, dtype=np.uint16), kept


def num_workers(num_proc: int) -> int:
    if num_proc > 0:
        return num_proc
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def tokenize_to_files(
    texts: dict[str, datasets.Dataset], enc: tiktoken.Encoding, out: Path, workers: int, where: str
) -> dict[str, dict[str, int]]:
    """Encode every split of `texts` into `out`/<split>.bin; return {split: {"tokens", "stories"}}.

    Each split goes to a temporary file first; all are renamed only when every split is complete
    and non-empty, after the old meta.json is removed (the caller writes the new one).
    """
    total = sum(len(d) for d in texts.values())
    chunk = max(1, min(MAX_CHUNK, math.ceil(total / (CHUNKS_PER_WORKER * workers))))
    tasks = [(s, a, min(a + chunk, len(texts[s]))) for s in texts for a in range(0, len(texts[s]), chunk)]
    tmp = {s: out / f".{split_file(s)}.{os.getpid()}.tmp" for s in texts}
    counts = {s: {"tokens": 0, "stories": 0} for s in texts}
    files: dict = {}
    done = False
    try:
        for s in texts:
            files[s] = open(tmp[s], "wb")
        with _task_runner(texts, enc.name, workers) as run, tqdm(
            total=total, unit="story", desc=f"tokenize ({workers} proc)", dynamic_ncols=True
        ) as bar:
            for split, read, ids, kept in run(_encode_range, tasks):
                files[split].write(ids.tobytes())
                counts[split]["tokens"] += len(ids)
                counts[split]["stories"] += kept
                bar.update(read)
        for f in files.values():
            f.close()
        for s in texts:
            if counts[s]["stories"] == 0:
                raise DataError(f"{where}: the {s} split has no stories (empty corpus)")
        (out / META_FILE).unlink(missing_ok=True)  # from here until the new one, nothing is valid
        for s in texts:
            os.replace(tmp[s], out / split_file(s))
        done = True
    finally:
        for f in files.values():
            f.close()
        if not done:
            for path in tmp.values():
                path.unlink(missing_ok=True)
    return counts


@contextmanager
def _task_runner(texts: dict[str, datasets.Dataset], tokenizer: str, workers: int):
    """`with _task_runner(...) as run:` `run(fn, tasks)` yields `fn(task)` for each task, in order.

    This process takes every `workers`-th task itself and `workers - 1` forked processes take the
    rest, so this core works while they start and no core waits on the one that only writes.
    Forked processes inherit the datasets without pickling (a spawned pool, where fork does not
    exist, pickles them once per process).
    """
    _init_worker(texts, tokenizer)
    pool = None
    if workers > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        pool = multiprocessing.get_context(method).Pool(workers - 1, _init_worker, (texts, tokenizer))

    def run(fn, tasks):
        queued = {i: pool.apply_async(fn, (t,)) for i, t in enumerate(tasks) if i % workers} if pool else {}
        for i, task in enumerate(tasks):
            yield queued.pop(i).get() if i in queued else fn(task)

    try:
        yield run
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        _WORK.clear()
