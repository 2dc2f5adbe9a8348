"""The modules of predlearn and their imports, read from the code: a picture and a check.

    python scripts/architecture.py                 # writes docs/img/architecture.png
    python scripts/architecture.py --check         # only the check

Every import of a predlearn module counts, those inside functions included. The check fails
(exit 1) on an import cycle between modules, or on an import of ``predlearn.zoo`` or
``predlearn.datamodules`` from the framework (``predlearn/``): the zoo and the data build on the
framework, never the other way round. In the picture the framework's modules stand in layers,
each importing only from the layers below it; ``zoo/`` and ``datamodules/`` are one box each.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: folder -> the package it installs as (pyproject.toml [tool.setuptools.package-dir])
PACKAGES = {"predlearn": "predlearn", "zoo": "predlearn.zoo", "datamodules": "predlearn.datamodules"}
#: the two folders drawn as one box each
GROUPS = ("predlearn.zoo", "predlearn.datamodules")


def module_names() -> dict[str, Path]:
    """Every module of the three folders by its installed name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def imports_of(path: Path, name: str, known: Iterable[str]) -> set[str]:
    """The known modules that the module ``name`` at ``path`` imports, anywhere in it."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # ``from package import module`` imports the module; ``from module import name``
            # the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imports_of(path, name, names) for name, path in names.items()}


def box(name: str) -> str:
    """The box a module is drawn in: its group, or the module itself."""
    return next((group for group in GROUPS if name == group or name.startswith(group + ".")),
                name)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: each strongly connected set of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(graph: dict[str, set[str]]) -> list[str]:
    """What the check refuses: cycles, and the framework importing the zoo or the data."""
    found = [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    for name, targets in sorted(graph.items()):
        if box(name) not in GROUPS:  # a framework module
            found += [f"{name} imports {target}: the framework must not import the zoo or "
                      "the data" for target in sorted(targets) if box(target) in GROUPS]
    return found


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """The boxes by layer: each box one layer above the highest box it imports."""
    boxes: dict[str, set[str]] = {}
    for name, targets in graph.items():
        boxes.setdefault(box(name), set()).update(box(t) for t in targets if box(t) != box(name))
    level: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in level:
            level[node] = 0  # a cycle (refused by the check) cannot recurse for ever
            level[node] = 1 + max((depth(t) for t in boxes[node]), default=-1)
        return level[node]

    for node in boxes:
        depth(node)
    return [sorted(n for n in boxes if level[n] == k) for k in range(max(level.values()) + 1)]


def reduced(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The arrows left when those that a longer path already implies are taken out (the
    transitive reduction of an acyclic graph): the picture shows every dependency, once."""
    below: dict[str, set[str]] = {}
    for source, target in edges:
        below.setdefault(source, set()).add(target)

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for nxt in below.get(node, ()):
                if (node, nxt) != skip and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    return {edge for edge in edges if edge[1] not in reachable(edge[0], edge)}


def draw(graph: dict[str, set[str]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = layers(graph)
    width = max(len(row) for row in rows)
    position = {name: ((i + 0.5) / len(row) * width, k) for k, row in enumerate(rows)
                for i, name in enumerate(row)}
    edges = reduced({(box(a), box(b)) for a, targets in graph.items() for b in targets
                     if box(a) != box(b)})
    fig, ax = plt.subplots(figsize=(max(12, width * 1.9), 1.3 * len(rows) + 1))
    for source, target in sorted(edges):
        (x0, y0), (x1, y1) = position[source], position[target]
        ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                    arrowprops={"arrowstyle": "->", "color": "0.7", "lw": 0.6})
    for name, (x, y) in position.items():
        group = name in GROUPS
        label = (name.replace("predlearn.", "") + "/") if group else name.removeprefix(
            "predlearn.")
        ax.text(x, y, label, ha="center", va="center", fontsize=7 if not group else 9,
                bbox={"boxstyle": "round", "fc": "#fde9c9" if group else "#dce9f7",
                      "ec": "0.4", "lw": 0.6})
    ax.set_xlim(-0.3, width + 0.3)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.axis("off")
    ax.set_title("predlearn's modules, read from the code: each imports only from rows below it "
                 "(an arrow points to what is imported; arrows implied by a longer path are left "
                 "out); zoo/ and datamodules/ build on the framework", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="check only, draw nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "architecture.png")
    args = parser.parse_args(argv)
    graph = import_graph()
    found = problems(graph)
    for problem in found:
        print(f"architecture: {problem}", file=sys.stderr)
    if not args.check and not found:
        draw(graph, args.out)
        print(f"architecture: {len(graph)} modules, {len(layers(graph))} layers; wrote "
              f"{args.out.relative_to(ROOT)}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
