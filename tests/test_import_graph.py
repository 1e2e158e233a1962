"""The import graph of hybridnas/, read from the source with ast (nothing is imported): no circle
among modules or among the top-level parts, and no import from a lower layer up to a higher one.

Every import counts: at module level, inside a function and under ``if TYPE_CHECKING:`` (a
circle that only a lazy import keeps from failing is still a circle in the design). Importing
``hybridnas.a.b.c`` also runs the ``__init__`` of ``hybridnas.a`` and ``hybridnas.a.b``, so it
is an edge to each of them too, except to the importer's own packages (already running).
"""

from __future__ import annotations

import ast
from collections import defaultdict, deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "hybridnas"

#: The top-level parts of hybridnas/, lowest first: a module imports its own layer or lower ones.
#: ``config`` (the schema) imports no implementation; ``engine`` (checkpoints, distributed,
#: tracking) is below ``models``, which loads weights through it; ``errors`` gathers the
#: user-error types of data/, engine/ and space/ for the tools; ``groundtruth`` (the table, its
#: recipe, ``regret``) samples cells with the evolution's sampler.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("compat", "config"),
    ("ops",),
    ("space",),
    ("data",),
    ("measure", "viz"),
    ("engine",),
    ("models",),
    ("train",),
    ("search",),
    ("export", "errors"),
    ("groundtruth",),
)
#: The stages of hybridnas/search/, lowest first.
SEARCH_LAYERS: tuple[tuple[str, ...], ...] = (("scorers",), ("differentiable",), ("evolution",))

#: Known edges that break the rules, each with the change that removes it (none left). They are
#: left out of every check; a test fails once one of them is gone, so that this list only shrinks.
PENDING: dict[tuple[str, str], str] = {}

Edges = dict[str, dict[str, str]]  # importer -> {imported module: "file:line" of the import}


def find_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module and package under ``root``/hybridnas."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement names (``from m import x``: m.x, a module or not)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
    return [f"{base}.{alias.name}" for alias in node.names]


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` lives in: itself, or its longest prefix that is a module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _packages_of(module: str) -> set[str]:
    """The packages whose ``__init__`` importing ``module`` runs first (the root one aside)."""
    parts = module.split(".")
    return {".".join(parts[:k]) for k in range(2, len(parts))}


def import_graph(root: Path) -> Edges:
    """Module -> {module it imports (and the packages those are in): "file:line"}."""
    modules = find_modules(root)
    edges: Edges = defaultdict(dict)
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        running = {module, *_packages_of(module)}  # already being imported: no edge to them
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _imported_names(node, module, is_package)
            named = {_resolve(n, modules) for n in names if n.split(".")[0] == PACKAGE}
            named -= {None, PACKAGE, module}
            run_first = {p for t in named for p in _packages_of(t)} - running
            where = f"{path.relative_to(root)}:{node.lineno}"
            for target in sorted(named | run_first):
                edges[module].setdefault(target, where)
    return edges


def without_pending(edges: Edges) -> Edges:
    """The graph less the ``PENDING`` edges and the package edges only they bring."""
    out: Edges = {}
    for a, targets in edges.items():
        pending = [b for b in targets if (a, b) in PENDING]
        packages = {p for b in pending for p in _packages_of(b)}
        kept = {b: w for b, w in targets.items() if b not in pending and b not in packages}
        needed = {p for b in kept for p in _packages_of(b)}  # brought by another import too
        out[a] = {b: w for b, w in targets.items() if b in kept or b in packages & needed}
    return out


def part(module: str) -> str:
    """The top-level part of hybridnas a module belongs to (``search`` for hybridnas.search.x)."""
    return module.split(".")[1]


def part_graph(edges: Edges) -> Edges:
    """The graph between top-level parts, each edge with one import that makes it."""
    parts: Edges = defaultdict(dict)
    for a, bs in edges.items():
        for b, where in sorted(bs.items(), key=lambda kv: -len(kv[0])):  # modules before packages
            if a != PACKAGE and part(a) != part(b):
                parts[part(a)].setdefault(part(b), f"{a} -> {b} ({where})")
    return parts


def find_circle(edges: Edges) -> list[str]:
    """One circle of the graph as [a, b, ..., a] (the shortest through its first node found
    on one), or [] when there is none."""
    nodes = sorted({*edges, *(b for bs in edges.values() for b in bs)})
    for start in nodes:
        back = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for nxt in sorted(edges.get(node, {})):
                if nxt == start:
                    path = [node]
                    while back[path[-1]] is not None:
                        path.append(back[path[-1]])
                    return [*reversed(path), start]
                if nxt not in back:
                    back[nxt] = node
                    queue.append(nxt)
    return []


def describe(circle: list[str], edges: Edges) -> str:
    """One line per edge of ``circle``, with the import that makes it."""
    steps = zip(circle[:-1], circle[1:], strict=True)
    return "\n".join(f"  {a} -> {b}   ({edges[a][b]})" for a, b in steps)


def upward_imports(edges: Edges, layers: tuple[tuple[str, ...], ...], depth: int) -> list[str]:
    """Edges from a lower to a higher layer, between the parts named at ``depth`` of a module's
    dotted name (1: hybridnas.<part>, 2: hybridnas.search.<stage>)."""
    rank = {name: k for k, layer in enumerate(layers) for name in layer}
    prefix = PACKAGE if depth == 1 else f"{PACKAGE}.search"
    bad = []
    for a, bs in edges.items():
        for b, where in bs.items():
            pa, pb = a.split("."), b.split(".")
            if len(pa) <= depth or len(pb) <= depth or ".".join(pa[:depth]) != prefix:
                continue
            if ".".join(pb[:depth]) != prefix or not {pa[depth], pb[depth]} <= rank.keys():
                continue  # outside the layered parts, or a part test_every_... reports
            if rank[pa[depth]] < rank[pb[depth]]:
                bad.append(f"  {a} ({pa[depth]}) -> {b} ({pb[depth]})   {where}")
    return sorted(bad)


# ---------------------------------------------------------------- the package


def test_every_top_level_part_has_a_layer_and_search_holds_only_stages():
    modules = find_modules(ROOT)
    parts = {part(m) for m in modules if m != PACKAGE}
    layered = {name for layer in LAYERS for name in layer}
    assert not parts - layered, f"add these parts of hybridnas/ to LAYERS: {parts - layered}"
    inside = {m.split(".")[2] for m in modules if m.startswith(f"{PACKAGE}.search.")}
    stages = {name for layer in SEARCH_LAYERS for name in layer}
    assert not inside - stages, f"search/ holds only its stages ({stages}), not {inside - stages}"


def test_no_circle_among_modules():
    edges = without_pending(import_graph(ROOT))
    circle = find_circle(edges)
    assert not circle, "modules import each other in a circle:\n" + describe(circle, edges)


def test_no_circle_among_top_level_parts():
    parts = part_graph(without_pending(import_graph(ROOT)))
    circle = find_circle(parts)
    assert not circle, "parts of hybridnas/ import each other in a circle:\n" + describe(
        circle, parts
    )


def test_no_import_from_a_lower_layer_up():
    bad = upward_imports(without_pending(import_graph(ROOT)), LAYERS, 1)
    assert not bad, "imports from a lower layer up to a higher one (LAYERS):\n" + "\n".join(bad)


def test_no_search_stage_imports_a_later_one():
    bad = upward_imports(without_pending(import_graph(ROOT)), SEARCH_LAYERS, 2)
    assert not bad, "search stages importing a later stage (SEARCH_LAYERS):\n" + "\n".join(bad)


def test_every_pending_edge_still_exists():
    edges = import_graph(ROOT)
    gone = [f"{a} -> {b}" for a, b in PENDING if b not in edges.get(a, {})]
    assert not gone, f"these edges are gone: delete them from PENDING: {gone}"


# ---------------------------------------------------------------- the checks themselves


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_find_a_planted_circle_and_an_upward_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "ops/__init__.py": "",
            "ops/a.py": "def f():\n    from hybridnas.space.b import g\n",  # lazy: still counts
            "space/__init__.py": "",
            "space/b.py": "from hybridnas.ops import a\n",
        },
    )
    edges = import_graph(root)
    assert edges["hybridnas.ops.a"] == {
        "hybridnas.space.b": f"{Path(PACKAGE, 'ops', 'a.py')}:2",
        "hybridnas.space": f"{Path(PACKAGE, 'ops', 'a.py')}:2",  # its package's __init__ runs
    }
    assert "hybridnas.ops" not in edges["hybridnas.ops.a"]  # its own package: not an edge
    assert find_circle(edges) == ["hybridnas.ops.a", "hybridnas.space.b", "hybridnas.ops.a"]
    assert find_circle(part_graph(edges)) == ["ops", "space", "ops"]
    bad = upward_imports(edges, (("ops",), ("space",)), 1)
    assert [line.split()[0] for line in bad] == ["hybridnas.ops.a", "hybridnas.ops.a"]


def test_a_relative_import_and_a_from_import_of_a_name_resolve_to_the_module(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "search/__init__.py": "",
            "search/scorers/__init__.py": "from . import zero_cost\n",
            "search/scorers/zero_cost.py": "from .registry import get\n",
            "search/scorers/registry.py": "def get():\n    pass\n",
        },
    )
    edges = import_graph(root)
    assert set(edges["hybridnas.search.scorers"]) == {"hybridnas.search.scorers.zero_cost"}
    assert set(edges["hybridnas.search.scorers.zero_cost"]) == {"hybridnas.search.scorers.registry"}
    assert find_circle(edges) == []
