"""Reading a corpus: the Hugging Face hub or local files, as one `datasets.Dataset` per split.

Every source becomes a `datasets.Dataset` with one `text` column per split, so one path tokenizes
them all: the hub (`datasets.load_dataset(hub_dataset)`, splits `train` and `validation`), or local
files: .txt (or xz-compressed .txt.xz, read in memory) with stories separated by lines holding
only `<|endoftext|>`, and .jsonl / .json / .parquet with a text column (loaded with
`datasets.load_dataset("json" | "parquet")`). Files may be given as paths, globs or directories.
"""

from __future__ import annotations

import glob
import lzma
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable

from data.config import DataConfig, DataSource, project_path
from data.tokens import SPLITS, DataError

EOT_TEXT = "<|endoftext|>"  # a line holding only this separates the stories of a .txt file
LOCAL_BUILDERS = {".txt": None, ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
HUB_SPLITS = {"train": "train", "val": "validation"}


def load_texts(cfg: DataConfig) -> tuple[dict[str, datasets.Dataset], dict]:
    """One `datasets.Dataset` with a single `text` column per split, and a description of the source."""
    if DataSource(cfg.source) is DataSource.hub:
        train, val, source = _load_hub(cfg)
    else:
        train = load_local(cfg.train_files, cfg.text_column, "data.train_files")
        val = load_local(cfg.val_files, cfg.text_column, "data.val_files") if cfg.val_files else None
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


def load_local(files: list[str | Path], column: str, option: str) -> datasets.Dataset:
    """Local files, globs or directories (relative to the project root: `expand_files`) as one
    Dataset with a `text` column; `option` names the setting in errors."""
    parts = [_load_file(f, column, option) for f in expand_files([str(f) for f in files], option)]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def expand_files(patterns: list[str], option: str) -> list[Path]:
    """Paths, globs and directories (relative to the project root) -> the files they name, in
    order: a glob's matches sorted, a directory's files of a known kind (LOCAL_BUILDERS, .txt.xz)
    sorted. A glob that matches nothing or a directory without such files is an error naming it."""
    files: list[Path] = []
    for pattern in patterns:
        path = project_path(pattern)
        if glob.has_magic(str(path)):
            found = sorted(p for p in map(Path, glob.glob(str(path))) if p.is_file())
            if not found:
                raise DataError(f"{option}: {pattern!r} names no file (resolved against the project root: {path})")
        elif path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.is_file())
            found = [p for p in entries if file_kind(p) is not None]
            if not found:
                raise DataError(f"{option}: directory {path} holds no {', '.join(LOCAL_BUILDERS)} or .txt.xz "
                                f"file ({len(entries)} other file(s))")
        else:
            found = [path]  # checked (kind, existence) where it is read
        files.extend(found)
    return files


def file_kind(path: Path) -> str | None:
    """The LOCAL_BUILDERS key of a file: its extension, or .txt for an xz-compressed .txt.xz."""
    name = path.name.lower()
    if name.endswith(".txt.xz"):
        return ".txt"
    return path.suffix.lower() if path.suffix.lower() in LOCAL_BUILDERS else None


def read_text(path: Path, option: str) -> str:
    """A .txt or .txt.xz file's text (xz read in memory with lzma); errors name the file."""
    try:
        if path.name.lower().endswith(".xz"):
            with lzma.open(path, "rb") as f:
                return f.read().decode("utf-8")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{option}: {path} is not UTF-8 text ({e})") from e
    except lzma.LZMAError as e:
        raise DataError(f"{option}: {path} is not a valid xz file ({e})") from e


def _load_file(path: Path, column: str, option: str) -> datasets.Dataset:
    if path.stat().st_size == 0:
        raise DataError(f"{option}: {path} is empty")
    builder = LOCAL_BUILDERS[file_kind(path)]
    if builder is None:  # .txt, .txt.xz
        text = read_text(path, option)
        if not text.strip():
            raise DataError(f"{option}: {path} holds no text (only whitespace)")
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
