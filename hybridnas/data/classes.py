"""Class names <-> indices, saved with each run so training and evaluation agree."""

from __future__ import annotations

import json
import os
from pathlib import Path


def save_class_index(class_names: list[str], path: str | os.PathLike) -> None:
    """Write ``{"classes": [...], "index": {name: i}}`` as JSON."""
    doc = {"classes": list(class_names), "index": {c: i for i, c in enumerate(class_names)}}
    Path(path).write_text(json.dumps(doc, indent=1))


def load_class_index(path: str | os.PathLike) -> list[str]:
    """Class names in index order, from a file written by :func:`save_class_index`."""
    doc = json.loads(Path(path).read_text())
    names = doc["classes"] if isinstance(doc, dict) and "classes" in doc else doc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a list of class names under 'classes'")
    return names
