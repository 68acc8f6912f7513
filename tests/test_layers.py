"""No upward arrows and no import cycles (#29): every module of ``adunet_lib`` imports only from its own
layer and the layers below it (``adunet_lib/layers.py``), and no modules import each other in a circle.

Imports are read with ``ast``, top-level ones and those inside functions alike (a lazy import runs
too, only later). Imports under ``if TYPE_CHECKING:`` obey the layer rule like any other (a type a
lower layer names is a dependency all the same) but are left out of the cycle check: they never run.
An import of ``a.b.c`` counts as one of ``a.b.c`` (the ``__init__`` files Python runs on the way are
checked as modules of their own). Modules loaded by name at run time (the model registry's
``importlib``) are not seen: that is the registry's plug-in mechanism, not an import.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from conftest import REPO

from adunet_lib.layers import LAYERS, STAGE_LAYER, STAGE_RUNNERS

Layers = Sequence[tuple[str, Sequence[str]]]


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    runs: bool  # False: only under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        return f"{self.source} → {self.target} (line {self.line}{'' if self.runs else ', TYPE_CHECKING'})"


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name → file of every module of ``package`` (a folder under ``root``)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside an ``if TYPE_CHECKING:`` body."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return hidden


def import_edges(root: Path, package: str) -> list[Edge]:
    """Every import of one module of ``package`` by another (the package's own modules only)."""
    known = modules(root, package)

    def resolve(name: str) -> str | None:  # the module that importing ``name`` runs (a.b.func → a.b)
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    edges = []
    for source, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hidden = _type_checking_only(tree)
        here = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                # ``from pkg import mod`` imports pkg.mod; ``from mod import name`` imports mod
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name == package or name.startswith(package + ".") else None
                if target and target != source:
                    edges.append(Edge(source, target, node.lineno, id(node) not in hidden))
    return edges


def layer_of(module: str, layers: Layers) -> int | None:
    """Index (0 = lowest) of the layer that holds ``module``; None when no layer lists it."""
    top = module.split(".")[1] if "." in module else ""
    return next((i for i, (_, members) in enumerate(layers) if top in members), None)


def upward_imports(edges: Iterable[Edge], names: Iterable[str], layers: Layers) -> list[str]:
    """A line for each module no layer holds and each import of a higher layer."""
    problems = [f"{m} is in no layer: add {m.split('.')[1]!r} to adunet_lib/layers.py"
                for m in sorted(set(names)) if layer_of(m, layers) is None]
    for e in edges:
        low, high = layer_of(e.source, layers), layer_of(e.target, layers)
        if low is not None and high is not None and high > low:
            problems.append(f"{e} (layer {layers[low][0]} → higher layer {layers[high][0]})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (``[a, b, …, a]``) through each strongly connected component of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    circles = []
    for component in components:  # the shortest way from the component's first module back to it
        start = min(component)
        previous: dict[str, str | None] = {start: None}
        queue, last = [start], None
        while last is None:
            node = queue.pop(0)
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    last = node
                    break
                if nxt in component and nxt not in previous:
                    previous[nxt] = node
                    queue.append(nxt)
        path = [last]
        while previous[path[-1]] is not None:
            path.append(previous[path[-1]])
        circles.append([*reversed(path), start])
    return sorted(circles)


def runtime_graph(edges: Iterable[Edge], key=lambda module: module) -> dict[str, set[str]]:
    """Who imports whom when the code runs (``key`` may fold modules into their packages)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.runs and key(e.source) != key(e.target):
            graph.setdefault(key(e.source), set()).add(key(e.target))
    return graph


def stage_imports(edges: Iterable[Edge], layers: Layers, stage_layer: str, runners: Iterable[str]) -> list[str]:
    """Imports of a stage package's ``stage`` module from outside that package and the runners."""
    stages = dict(layers)[stage_layer]
    problems = []
    for e in edges:
        parts = e.target.split(".")
        if len(parts) == 3 and parts[1] in stages and parts[2] == "stage":
            top = e.source.split(".")[1] if "." in e.source else ""
            if top != parts[1] and top not in runners:
                problems.append(f"{e}: stages meet in the run folder, not through each other's stage.py")
    return problems


def check(root: Path, package: str, layers: Layers, stage_layer: str, runners: Iterable[str]) -> dict[str, list]:
    edges = import_edges(root, package)
    stages = set(dict(layers)[stage_layer])

    def stage_package(module: str) -> str:  # a stage module stands for its package; others are left out
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in stages else ""

    stage_edges = [e for e in edges if stage_package(e.source) and stage_package(e.target)]
    package_graph = runtime_graph(stage_edges, stage_package)
    return {
        "upward": upward_imports(edges, modules(root, package), layers),
        "cycles": [" → ".join(c) for c in cycles(runtime_graph(edges))],
        "stage package cycles": [" → ".join(c) for c in cycles(package_graph)],
        "stage.py imports": stage_imports(edges, layers, stage_layer, runners),
    }


# -- adunet_lib itself -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def found():
    return check(REPO, "adunet_lib", LAYERS, STAGE_LAYER, STAGE_RUNNERS)


def test_the_checker_reads_the_real_import_graph():
    edges = {(e.source, e.target) for e in import_edges(REPO, "adunet_lib")}
    assert ("adunet_lib.preprocessing.pipeline", "adunet_lib.run_folder") in edges  # top level
    assert ("adunet_lib.anomaly_models.data", "adunet_lib.preprocessing.pipeline") in edges  # inside a function
    assert ("adunet_lib.runner.sense", "adunet_lib.zones.stage") in edges  # from package import module
    assert len(edges) > 100


def test_no_module_imports_a_higher_layer(found):
    assert not found["upward"], "\n".join(found["upward"])


def test_no_modules_import_each_other_in_a_circle(found):
    assert not found["cycles"], "\n".join(found["cycles"])


def test_the_stage_packages_import_each_other_without_a_circle(found):
    assert not found["stage package cycles"], "\n".join(found["stage package cycles"])


def test_a_stage_py_is_imported_only_by_its_own_package_and_the_runner(found):
    assert not found["stage.py imports"], "\n".join(found["stage.py imports"])


def test_every_layer_member_exists():
    names = {p.stem if p.is_file() else p.name for p in (REPO / "adunet_lib").iterdir()
             if p.suffix == ".py" or (p / "__init__.py").is_file()} | {""}
    listed = [m for _, members in LAYERS for m in members]
    assert len(listed) == len(set(listed)), "a name is in two layers"
    assert set(listed) - names == set(), "adunet_lib/layers.py names modules that do not exist"


def _diagram(layers: Layers, lib: Path) -> str:
    """The layer listing ARCHITECTURE.md shows, highest layer first."""
    width = max(len(name) for name, _ in layers) + 2
    rows = []
    for name, members in reversed(layers):
        shown = [m + "/" if m and (lib / m).is_dir() else (m or "__init__") + ".py" for m in members]
        rows.append(f"{name:<{width}}{'  '.join(shown)}")
    return "\n".join(rows) + "\n"


def test_architecture_md_shows_the_layers():
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    top = LAYERS[-1][0]
    blocks = re.findall(rf"```text\n({top} .*?)```", text, flags=re.S)
    assert blocks, f"ARCHITECTURE.md has no ```text block starting with the top layer ({top})"
    assert blocks[0] == _diagram(LAYERS, REPO / "adunet_lib")


# -- the checker catches what it should ---------------------------------------------------------

TOY_LAYERS = (("base", ("", "low", "typed")), ("stages", ("one", "two")), ("top", ("high", "runner")))


def _toy(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"toy/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_checker_names_a_planted_upward_import_and_circle(tmp_path):
    root = _toy(tmp_path, {
        "toy/low.py": "def helper():\n    from toy.high import shown  # lazy, upward, closes a circle\n    return shown\n",
        "toy/high.py": "from toy.low import helper\nshown = 1\n",
        "toy/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy import high\n",
        "toy/loose.py": "",
    })
    found = check(root, "toy", TOY_LAYERS, "stages", ("runner",))
    assert "toy.low → toy.high (line 2) (layer base → higher layer top)" in found["upward"]
    # a TYPE_CHECKING import still points up, but it never runs, so it closes no circle
    assert "toy.typed → toy.high (line 3, TYPE_CHECKING) (layer base → higher layer top)" in found["upward"]
    assert "toy.loose is in no layer: add 'loose' to adunet_lib/layers.py" in found["upward"]
    assert found["cycles"] == ["toy.high → toy.low → toy.high"]


def test_the_checker_names_stage_to_stage_imports_and_package_circles(tmp_path):
    root = _toy(tmp_path, {
        "toy/one/__init__.py": "", "toy/one/stage.py": "from toy.two import stage\n",
        "toy/one/tools.py": "",
        "toy/two/__init__.py": "", "toy/two/stage.py": "from . import tools\n",
        "toy/two/tools.py": "from ..one.tools import *\n",  # relative imports resolve too
        "toy/runner.py": "from toy.one import stage\nfrom toy.two import stage as second\n",
    })
    found = check(root, "toy", TOY_LAYERS, "stages", ("runner",))
    assert found["stage.py imports"] == [
        "toy.one.stage → toy.two.stage (line 1): stages meet in the run folder, not through each other's stage.py"]
    assert found["stage package cycles"] == ["one → two → one"]
    assert found["cycles"] == [] and found["upward"] == []
