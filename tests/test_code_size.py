"""Size limits that keep the code readable: no module of hybridnas/ or tools/ over 450 lines,
no function (or method) over 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted([*(ROOT / "hybridnas").rglob("*.py"), *(ROOT / "tools").rglob("*.py")])


def test_no_module_over_450_lines():
    long = {}
    for path in _sources():
        n = len(path.read_text().splitlines())
        if n > MAX_FILE_LINES:
            long[str(path.relative_to(ROOT))] = n
    assert not long, f"modules over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
