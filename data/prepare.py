"""Text -> tiktoken token ids in memory-mappable files: train.bin, val.bin and meta.json.

    python data/prepare.py data=tinystories_local     # ../shared/data/tinystories/*.txt
    python data/prepare.py data=tinystories_sample    # the small sample in data/sample/
    python data/prepare.py data=tinystories           # the Hugging Face hub
    python data/prepare.py data=tinystories_local force=true

The trainer and the evaluator call `ensure_prepared(cfg)`, which does the same and returns the
folder; `data.tokens.load_tokens(folder, split)` then maps a split.

Every source becomes a `datasets.Dataset` with one `text` column per split, so one path tokenizes
them all: the hub (`datasets.load_dataset(hub_dataset)`, splits `train` and `validation`), or local
files: .txt with stories separated by lines holding only `<|endoftext|>`, and .jsonl / .json /
.parquet with a text column (loaded with `datasets.load_dataset("json" | "parquet")`).

Tokenizing: `encode_ordinary` per story, then the end-of-text id. A pool of forked processes
(one per core) encodes contiguous chunks of stories, and the parent appends the chunks in order.
On this 2-core machine that was the fastest of the options measured (bench/RESULTS.md):
`datasets.map(num_proc=2)` and tiktoken's threaded `encode_ordinary_batch` were both slower than
the plain single-process loop.

Outputs go to temporary names and are renamed at the end, meta.json last, so a killed run leaves
the previous state or nothing. A run is skipped when meta.json's fingerprint (tokenizer, split
options and the sha256 of every local input file, or the hub dataset's name) is unchanged. The hub
dataset is identified by its name only: pass force=true after it changes upstream.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the project root: configs' paths are relative to it
if str(ROOT) not in sys.path:  # run as a script: make `data`, `configs`, ... importable
    sys.path.insert(0, str(ROOT))

import array
import hashlib
import json
import logging
import math
import multiprocessing
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone

import datasets
import numpy as np
import pyarrow as pa
import tiktoken
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable
from omegaconf import OmegaConf
from tqdm import tqdm

from data.config import DataConfig, DataSource
from data.tokens import FORMAT_VERSION, META_FILE, SPLITS, TOKEN_DTYPE, DataError, read_meta, split_file

log = logging.getLogger(__name__)

EOT_TEXT = "<|endoftext|>"  # a line holding only this separates the stories of a .txt file
LOCAL_BUILDERS = {".txt": None, ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
HUB_SPLITS = {"train": "train", "val": "validation"}
MAX_CHUNK = 1024  # stories per task of the tokenizer pool
CHUNKS_PER_WORKER = 8  # at least this many tasks per process, for balance on small corpora


def project_path(path: str | Path) -> Path:
    """A config path resolved against the project root (absolute paths are kept)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path


def ensure_prepared(cfg: DataConfig, force: bool = False) -> Path:
    """Prepare `cfg`'s corpus unless its files are up to date, and return their folder.

    Call it on one process only (rank 0, then a barrier): two processes preparing the same folder
    at once would both write it. Raises `DataError` on bad input, with nothing written.
    """
    prepare(cfg, force=force)
    return project_path(cfg.cache_dir)


def prepare(cfg: DataConfig, force: bool = False) -> dict:
    """Tokenize `cfg`'s corpus into cache_dir (skipped when up to date); return its meta.json.

    `cfg` may also be a DictConfig or a dict with DataConfig's keys.
    """
    if not isinstance(cfg, DataConfig):
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), cfg))
    out = project_path(cfg.cache_dir)
    enc = get_tokenizer(cfg.tokenizer)
    _check_options(cfg)
    fingerprint = input_fingerprint(cfg)
    if not force and is_up_to_date(out, fingerprint):
        log.info("%s is up to date (fingerprint %s)", out, fingerprint[:12])
        return read_meta(out)

    texts, source = load_texts(cfg)
    out.mkdir(parents=True, exist_ok=True)
    counts = tokenize_to_files(texts, enc, out, _num_workers(cfg.num_proc), source["where"])
    meta = {
        "format": FORMAT_VERSION,
        "name": cfg.name,
        "tokenizer": cfg.tokenizer,
        "vocab_size": enc.n_vocab,
        "eot_token": enc.eot_token,
        "dtype": TOKEN_DTYPE.name,
        "splits": counts,
        "source": source,
        "config": asdict(cfg) | {"source": DataSource(cfg.source).value},
        "fingerprint": fingerprint,
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json_atomic(out / META_FILE, meta)
    log.info(
        "%s: train %d tokens (%d stories), val %d tokens (%d stories)", out,
        counts["train"]["tokens"], counts["train"]["stories"],
        counts["val"]["tokens"], counts["val"]["stories"],
    )
    return meta


def get_tokenizer(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding `name`, checked to fit the uint16 token files."""
    try:
        enc = tiktoken.get_encoding(name)
    except ValueError as e:  # an unknown name
        raise DataError(f"data.tokenizer={name}: {e}") from e
    limit = np.iinfo(TOKEN_DTYPE).max + 1
    if enc.n_vocab > limit:
        raise DataError(
            f"data.tokenizer={name}: its {enc.n_vocab} token ids do not fit the uint16 token files "
            f"(at most {limit}); use a tokenizer with a smaller vocabulary such as gpt2"
        )
    return enc


def _check_options(cfg: DataConfig) -> None:
    """Reject bad options and missing files before anything is read or written."""
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction={cfg.val_fraction}: must be in [0, 1)")
    if DataSource(cfg.source) is DataSource.hub:
        return
    if not cfg.train_files:
        raise DataError("data.train_files is empty: list the training text files (source=local)")
    if cfg.val_files and cfg.val_fraction > 0:
        raise DataError(
            "data.val_files and data.val_fraction are both set: use val_files, or val_fraction "
            "to hold out training stories, not both"
        )
    if not cfg.val_files and cfg.val_fraction == 0:
        raise DataError(
            "no validation text: set data.val_files, or data.val_fraction to hold out a share "
            "of the training stories"
        )
    for option in ("train_files", "val_files"):
        for name in getattr(cfg, option):
            path = project_path(name)
            if path.suffix.lower() not in LOCAL_BUILDERS:
                raise DataError(
                    f"data.{option}: {path} has an unknown extension; expected one of "
                    f"{', '.join(LOCAL_BUILDERS)}"
                )
            if not path.is_file():
                raise DataError(
                    f"data.{option}: {path} does not exist. For an offline quick start use the "
                    "sample committed with the project: data=tinystories_sample"
                )


def input_fingerprint(cfg: DataConfig) -> str:
    """sha256 of everything that determines the token files (cheap: no tokenizing)."""
    ident: dict = {
        "format": FORMAT_VERSION,
        "tokenizer": cfg.tokenizer,
        "text_column": cfg.text_column,
        "val_fraction": cfg.val_fraction,
        "source": DataSource(cfg.source).value,
    }
    if cfg.val_fraction > 0:
        ident["split_seed"] = cfg.split_seed
    if DataSource(cfg.source) is DataSource.hub:
        ident["hub_dataset"] = cfg.hub_dataset
    else:
        for option in ("train_files", "val_files"):
            ident[option] = [_file_sha256(project_path(f)) for f in getattr(cfg, option)]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def is_up_to_date(out: Path, fingerprint: str) -> bool:
    """Whether `out` holds complete token files made from inputs with this fingerprint."""
    try:
        meta = read_meta(out)
        return meta["fingerprint"] == fingerprint and all(
            (out / split_file(s)).stat().st_size == meta["splits"][s]["tokens"] * TOKEN_DTYPE.itemsize
            for s in SPLITS
        )
    except (DataError, OSError, KeyError, ValueError):
        return False


# ----------------------------------------------------------------------------- reading the text


def load_texts(cfg: DataConfig) -> tuple[dict[str, datasets.Dataset], dict]:
    """One `datasets.Dataset` with a single `text` column per split, and a description of the source."""
    if DataSource(cfg.source) is DataSource.hub:
        train, val, source = _load_hub(cfg)
    else:
        train = _load_local(cfg.train_files, cfg.text_column, "data.train_files")
        val = _load_local(cfg.val_files, cfg.text_column, "data.val_files") if cfg.val_files else None
        source = {
            "kind": "local",
            "where": f"data.train_files {cfg.train_files} / data.val_files {cfg.val_files}",
            "train_files": list(cfg.train_files),
            "val_files": list(cfg.val_files),
        }
    if len(train) == 0:
        raise DataError(f"{source['where']}: the train split has no stories (empty corpus)")
    if val is None:
        train, val = _hold_out(train, cfg.val_fraction, cfg.split_seed, source["where"])
        source["val_from"] = f"val_fraction={cfg.val_fraction} of the training stories (split_seed={cfg.split_seed})"
    if len(val) == 0:
        raise DataError(f"{source['where']}: the val split has no stories (empty corpus)")
    return {"train": train, "val": val}, source


def _load_hub(cfg: DataConfig) -> tuple[datasets.Dataset, datasets.Dataset | None, dict]:
    where = f"hub dataset {cfg.hub_dataset}"
    try:
        loaded = datasets.load_dataset(cfg.hub_dataset)
    except OSError as e:  # ConnectionError, offline mode, dataset not found, HTTP errors
        raise DataError(
            f"could not load the {where} ({type(e).__name__}: {e}). The Hugging Face hub may be "
            "unreachable from this machine: use the local copy with data=tinystories_local "
            "(or the committed sample, data=tinystories_sample)"
        ) from e
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict(train=loaded)
    if HUB_SPLITS["train"] not in loaded:
        raise DataError(f"{where} has no '{HUB_SPLITS['train']}' split (splits: {list(loaded)})")
    val = loaded.get(HUB_SPLITS["val"])
    if val is not None and cfg.val_fraction > 0:
        raise DataError(
            f"data.val_fraction={cfg.val_fraction}, but the {where} has a validation split: "
            "set data.val_fraction=0"
        )
    if val is None and cfg.val_fraction == 0:
        raise DataError(
            f"the {where} has no '{HUB_SPLITS['val']}' split: set data.val_fraction to hold out "
            "a share of the training stories"
        )
    pick = {s: loaded[HUB_SPLITS[s]] for s in SPLITS if HUB_SPLITS[s] in loaded}
    pick = {s: _text_only(d, cfg.text_column, f"{where}, split {HUB_SPLITS[s]}") for s, d in pick.items()}
    source = {
        "kind": "hub",
        "where": where,
        "hub_dataset": cfg.hub_dataset,
        "hub_fingerprints": {s: getattr(d, "_fingerprint", None) for s, d in pick.items()},
    }
    return pick["train"], pick.get("val"), source


def _load_local(files: list[str], column: str, option: str) -> datasets.Dataset:
    parts = [_load_file(project_path(f), column, option) for f in files]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _load_file(path: Path, column: str, option: str) -> datasets.Dataset:
    if path.stat().st_size == 0:
        raise DataError(f"{option}: {path} is empty")
    builder = LOCAL_BUILDERS[path.suffix.lower()]
    if builder is None:  # .txt
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{option}: {path} is not UTF-8 text ({e})") from e
        # Not Dataset.from_dict: it fingerprints the data by pickling all of it (the slowest step
        # of a small prepare); a random fingerprint is enough, nothing here is cached by datasets.
        table = pa.table({"text": pa.array(split_stories(text), type=pa.large_string())})
        return datasets.Dataset(InMemoryTable(table), fingerprint=generate_random_fingerprint())
    # In memory, with a throwaway cache: nothing is left in ~/.cache for a one-off conversion.
    with tempfile.TemporaryDirectory(prefix="prepare-") as tmp:
        try:
            ds = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=tmp, keep_in_memory=True
            )
        except Exception as e:  # the builders' parse errors have no common base class
            raise DataError(f"{option}: could not read {path} as {builder} ({type(e).__name__}: {e})") from e
    return _text_only(ds, column, f"{option}: {path}")


def _text_only(ds: datasets.Dataset, column: str, where: str) -> datasets.Dataset:
    """`ds` reduced to its text column, renamed `text`; an error naming `where` if it has none."""
    if column not in ds.column_names:
        raise DataError(
            f"{where}: no column {column!r} (columns: {ds.column_names}); set data.text_column"
        )
    feature = ds.features[column]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise DataError(f"{where}: column {column!r} holds {feature}, not text")
    ds = ds.select_columns([column])
    return ds if column == "text" else ds.rename_column(column, "text")


def split_stories(text: str) -> list[str]:
    """The stories of a .txt corpus: the text between `<|endoftext|>` lines, stripped, non-empty.

    A separator is a line holding only `<|endoftext|>` (spaces and tabs around it allowed); the
    same string inside a line is story text. Splitting on the plain string and re-joining where it
    was inside a line is about twice as fast as a multiline regex (tests check they agree).
    """
    pieces = text.split(EOT_TEXT)
    stories, current = [], pieces[0]
    for i, piece in enumerate(pieces[1:], start=2):
        before, after = current.rstrip(" \t"), piece.lstrip(" \t")
        line_starts = not before or before[-1] == "\n"  # at the start of the file or of a line
        line_ends = after[:1] == "\n" or (not after and i == len(pieces))  # end of line or file
        if line_starts and line_ends:
            stories.append(current)
            current = piece
        else:
            current = current + EOT_TEXT + piece
    stories.append(current)
    return [s for s in (story.strip() for story in stories) if s]


def _hold_out(train: datasets.Dataset, fraction: float, seed: int, where: str):
    """(train, val): a seeded random `fraction` of the stories becomes val; order kept in both."""
    n = len(train)
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise DataError(
            f"{where}: data.val_fraction={fraction} of {n} stories leaves no training stories"
        )
    order = np.random.default_rng(seed).permutation(n)
    return train.select(np.sort(order[n_val:])), train.select(np.sort(order[:n_val]))


# ------------------------------------------------------------------------------------ tokenizing

_WORK: dict = {}  # per process: the split datasets and the encoding (set by _init_worker)


def _init_worker(texts: dict[str, datasets.Dataset], tokenizer: str) -> None:
    _WORK.update(texts=texts, enc=tiktoken.get_encoding(tokenizer))


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


def _num_workers(num_proc: int) -> int:
    if num_proc > 0:
        return num_proc
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def tokenize_to_files(
    texts: dict[str, datasets.Dataset], enc: tiktoken.Encoding, out: Path, workers: int, where: str
) -> dict[str, dict[str, int]]:
    """Encode every split into `out`/<split>.bin; return {split: {"tokens", "stories"}}.

    Each split goes to a temporary file first; all are renamed only when every split is complete
    and non-empty, after the old meta.json is removed (the caller writes the new one).
    """
    total = sum(len(d) for d in texts.values())
    chunk = max(1, min(MAX_CHUNK, math.ceil(total / (CHUNKS_PER_WORKER * workers))))
    tasks = [(s, a, min(a + chunk, len(texts[s]))) for s in SPLITS for a in range(0, len(texts[s]), chunk)]
    tmp = {s: out / f".{split_file(s)}.{os.getpid()}.tmp" for s in SPLITS}
    counts = {s: {"tokens": 0, "stories": 0} for s in SPLITS}
    files: dict = {}
    done = False
    try:
        for s in SPLITS:
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
        for s in SPLITS:
            if counts[s]["stories"] == 0:
                raise DataError(f"{where}: the {s} split has no stories (empty corpus)")
        (out / META_FILE).unlink(missing_ok=True)  # from here until the new one, nothing is valid
        for s in SPLITS:
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


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- CLI


def _main() -> None:
    import hydra

    from configs.schema import register_configs

    register_configs()

    @hydra.main(config_path="../configs", config_name="prepare", version_base=None)
    def main(cfg) -> None:
        data_cfg: DataConfig = OmegaConf.to_object(cfg.data)
        try:
            folder = ensure_prepared(data_cfg, force=cfg.force)
        except DataError as e:
            sys.exit(f"error: {e}")
        meta = read_meta(folder)
        for s in SPLITS:
            c = meta["splits"][s]
            print(f"{folder / split_file(s)}: {c['tokens']:,} tokens, {c['stories']:,} stories")

    main()


if __name__ == "__main__":
    _main()
