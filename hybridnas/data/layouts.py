"""Indexing of Kinetics-style video collections on disk: which file, which label.

Three layouts, each returning ``Index(entries, class_names, bad)``:

- folder:    ``root/[split/]<class>/<video>``
- csv:       ``root/<split>.csv`` (or ``root`` itself a CSV), rows ``path label``
- kinetics:  the official Kinetics400 CSVs (label,youtube_id,time_start,time_end,split) with clips
             named ``<youtube_id>_<start:06d>_<end:06d>.mp4`` anywhere under ``root``

Class indices are the sorted class names of the training split unless a class list is given
(e.g. loaded from a run's ``classes.json``), so they are stable across machines and splits.
``search_val`` is carved deterministically from train by hashing each video's key.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import NamedTuple

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "validate", "validation"),
    "test": ("test", "testing"),
    "search_val": ("search_val",),
}


class Entry(NamedTuple):
    path: str
    label: int
    key: str  # stable identity used to carve search_val (relative path or youtube id)


class Index(NamedTuple):
    entries: list[Entry]
    class_names: list[str]
    bad: list[tuple[str, str]]  # (where, reason) for inputs skipped while indexing


def is_search_val(key: str, fraction: float, seed: int) -> bool:
    """Deterministic, order-free membership of ``key`` in the search-val share of train."""
    h = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
    return h / 2**32 < fraction


def _carve(index: Index, split: str, fraction: float, seed: int) -> Index:
    """Train minus search_val, or search_val alone."""
    want = split == "search_val"
    kept = [e for e in index.entries if is_search_val(e.key, fraction, seed) == want]
    return Index(kept, index.class_names, index.bad)


def _find(root: Path, split: str, suffix: str = "") -> Path | None:
    for name in SPLIT_NAMES[split]:
        p = root / f"{name}{suffix}"
        if p.exists():
            return p
    return None


def _source(root: Path, split: str, suffix: str = "") -> tuple[Path, bool]:
    """Where a split's videos are listed, and whether search_val must be carved from it:
    train and search_val share train's listing unless a search_val listing exists."""
    if split in ("train", "search_val"):
        own_sval = _find(root, "search_val", suffix)
        if own_sval is not None:
            return (
                own_sval if split == "search_val" else _find(root, "train", suffix) or root
            ), False
        return _find(root, "train", suffix) or root, True
    own = _find(root, split, suffix)
    if own is None:
        raise FileNotFoundError(
            f"no {split!r} split under {root} (looked for {SPLIT_NAMES[split]})"
        )
    return own, False


# ---- folder per class ---------------------------------------------------------------------


def folder_index(
    root: str | os.PathLike,
    split: str,
    class_names: list[str] | None = None,
    search_val_fraction: float = 0.1,
    seed: int = 0,
) -> Index:
    """``root/[split/]<class>/<video>``; classes are the sorted subfolder names of train."""
    root = Path(root)
    base, carve = _source(root, split)
    if class_names is None:
        train_base = _find(root, "train") or root
        class_names = sorted(d.name for d in train_base.iterdir() if d.is_dir())
    known = {c: i for i, c in enumerate(class_names)}
    entries, bad = [], []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in VIDEO_EXTS)
        if d.name not in known:
            bad += [(str(f), f"unknown label {d.name!r}") for f in files]
            continue
        entries += [Entry(str(f), known[d.name], str(f.relative_to(base))) for f in files]
    index = Index(entries, class_names, bad)
    return _carve(index, split, search_val_fraction, seed) if carve else index


# ---- path label CSV -----------------------------------------------------------------------


def _read_rows(path: Path) -> list[list[str]]:
    """Rows of a ``path label`` file: whitespace separated (pytorchvideo's format), or commas."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rows.append(next(csv.reader([line])) if "," in line else line.split())
    return rows


def _infer_csv_classes(rows: list[list[str]]) -> list[str]:
    labels = [r[1].strip() for r in rows if len(r) == 2]
    if labels and all(lbl.isdigit() for lbl in labels):
        return [str(i) for i in range(max(int(lbl) for lbl in labels) + 1)]
    return sorted(set(labels))


def csv_index(
    root: str | os.PathLike,
    split: str,
    class_names: list[str] | None = None,
    search_val_fraction: float = 0.1,
    seed: int = 0,
) -> Index:
    """``root/<split>.csv`` (or ``root`` a CSV file: train/search_val only) with rows
    ``path label``; label is a class name or an integer index; paths relative to the CSV.
    Classes: ``class_names``, else ``classes.txt`` beside the CSV, else inferred from train."""
    root = Path(root)
    if root.is_file():
        if split not in ("train", "search_val"):
            raise FileNotFoundError(f"{root} is a single CSV: no {split!r} split in it")
        src, carve, base = root, True, root.parent
    else:
        src, carve = _source(root, split, ".csv")
        base = root
    if not src.is_file():
        raise FileNotFoundError(f"no {split}.csv under {root}")
    if class_names is None:
        txt = base / "classes.txt"
        if txt.exists():
            class_names = [ln.strip() for ln in txt.read_text().splitlines() if ln.strip()]
        else:
            train_csv = src if carve else (_find(base, "train", ".csv") or src)
            class_names = _infer_csv_classes(_read_rows(train_csv))
    known = {c: i for i, c in enumerate(class_names)}
    entries, bad = [], []
    for n, row in enumerate(_read_rows(src), 1):
        where = f"{src}:{n}"
        if len(row) != 2:
            bad.append((where, f"expected 2 columns (path label), got {len(row)}"))
            continue
        rel, label = row[0].strip(), row[1].strip()
        idx = known.get(label)
        if idx is None and label.isdigit() and int(label) < len(class_names):
            idx = int(label)
        path = base / rel
        if idx is None:
            bad.append((where, f"unknown label {label!r}"))
        elif not path.is_file():
            bad.append((str(path), "missing file"))
        else:
            entries.append(Entry(str(path), idx, rel))
    index = Index(entries, class_names, bad)
    return _carve(index, split, search_val_fraction, seed) if carve else index


# ---- official Kinetics400 annotations -----------------------------------------------------


def _kinetics_csv(root: Path, split: str) -> Path:
    for base in (root / "annotations", root):
        found = _find(base, split, ".csv")
        if found is not None:
            return found
    raise FileNotFoundError(f"no Kinetics annotation CSV for {split!r} under {root}")


def _kinetics_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty annotation file")
    return [h.strip() for h in rows[0]], rows[1:]


def _index_files(root: Path) -> dict[str, str]:
    """Video file stem -> path for every video under root (one walk, any folder nesting)."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() in VIDEO_EXTS:
                found.setdefault(stem, os.path.join(dirpath, f))
    return found


def kinetics_index(
    root: str | os.PathLike,
    split: str,
    class_names: list[str] | None = None,
    search_val_fraction: float = 0.1,
    seed: int = 0,
) -> Index:
    """Kinetics400 annotations (``root/[annotations/]{train,validate,test}.csv``) joined with
    clips ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` found anywhere under ``root``."""
    root = Path(root)
    carve = split in ("train", "search_val")
    src = _kinetics_csv(root, "train" if carve else split)
    if class_names is None:
        header, rows = _kinetics_rows(_kinetics_csv(root, "train"))
        col = header.index("label")
        class_names = sorted({r[col] for r in rows if len(r) == len(header)})
    known = {c: i for i, c in enumerate(class_names)}
    header, rows = _kinetics_rows(src)
    need = ("label", "youtube_id", "time_start", "time_end")
    if not all(h in header for h in need):
        raise ValueError(f"{src}: header {header} lacks one of {need}")
    col = {h: header.index(h) for h in need}
    files = _index_files(root)
    entries, bad = [], []
    for n, row in enumerate(rows, 2):
        where = f"{src}:{n}"
        if len(row) != len(header):
            bad.append((where, f"expected {len(header)} columns, got {len(row)}"))
            continue
        label, yid = row[col["label"]], row[col["youtube_id"]]
        try:
            start, end = (int(float(row[col[k]])) for k in ("time_start", "time_end"))
        except ValueError:
            bad.append((where, "time_start/time_end are not numbers"))
            continue
        stem = f"{yid}_{start:06d}_{end:06d}"
        if label not in known:
            bad.append((where, f"unknown label {label!r}"))
        elif stem not in files:
            bad.append((str(root / f"{stem}.mp4"), "missing file"))
        else:
            entries.append(Entry(files[stem], known[label], stem))
    index = Index(entries, class_names, bad)
    return _carve(index, split, search_val_fraction, seed) if carve else index


LAYOUTS = {"folder": folder_index, "csv": csv_index, "kinetics400": kinetics_index}
