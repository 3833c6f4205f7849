"""No import cycle between the package's modules.

Read with ``ast`` (no import is run): the edges are the imports of every module under
``src/spikedistill``. Module-level imports are the statements at the top level of the file, also
inside a top-level ``try`` / ``if``, but not under ``if TYPE_CHECKING:`` (never run). With
``lazy=True`` the imports inside functions and classes count too: a lazy import hides a cycle
from the interpreter but does not remove it (``data/augment.py`` <-> ``data/randaugment.py``
was one, through ``BatchAugment.__post_init__``). ``from P import N`` is an edge to ``P.N``
where that is a module, else to ``P``. A cycle is a strongly connected component of two or more
modules, or a module importing itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "spikedistill"


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the package."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(nodes, lazy: bool):
    """The Import / ImportFrom statements run when the module is first imported (``lazy``: and
    those inside its functions and classes); never those under ``if TYPE_CHECKING:``."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",
                                                                    "typing.TYPE_CHECKING"):
            yield from _imports(node.orelse, lazy)
        elif lazy or isinstance(node, (ast.If, ast.Try, ast.ExceptHandler, ast.With)):
            yield from _imports(ast.iter_child_nodes(node), lazy)


def import_graph(files: dict[str, Path], lazy: bool = False) -> dict[str, set[str]]:
    """``{module: package modules it imports}`` (module level; ``lazy``: anywhere in the file)."""
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path)).body, lazy):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in files)
                continue
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in files:
                    edges.add(sub)
                elif target in files:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, and self-imports (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    files = module_files()
    assert "spikedistill.data.augment" in files and len(files) > 50
    assert not cycles(import_graph(files)), f"module-level import cycles: {cycles(import_graph(files))}"


def test_no_cycle_hides_behind_a_lazy_import():
    graph = import_graph(module_files(), lazy=True)
    assert not cycles(graph), f"import cycles (lazy imports counted): {cycles(graph)}"


def test_augment_and_randaugment_share_the_pixel_ops_one_way():
    graph = import_graph(module_files())
    assert "spikedistill.data.randaugment" in graph["spikedistill.data.augment"]
    assert "spikedistill.data.pixel_ops" in graph["spikedistill.data.randaugment"]
    assert not graph["spikedistill.data.pixel_ops"] & {"spikedistill.data.augment",
                                                       "spikedistill.data.randaugment"}


def test_the_checker_finds_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import a\n")
    (pkg / "sub" / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import os\ntry:\n    from .a import x\nexcept ImportError:\n    pass\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from pkg.sub import a\ndef f():\n    from pkg.sub import a\n")
    graph = import_graph(module_files(tmp_path, "pkg"))
    assert graph["pkg.sub"] == {"pkg.sub.a"} and graph["pkg.sub.c"] == set()
    assert cycles(graph) == [["pkg.sub.a", "pkg.sub.b"]]
    (pkg / "sub" / "b.py").write_text("class B:\n    def f(self):\n        from pkg.sub.c import f\n")
    assert cycles(import_graph(module_files(tmp_path, "pkg"))) == []
    lazy = import_graph(module_files(tmp_path, "pkg"), lazy=True)
    assert lazy["pkg.sub.c"] == {"pkg.sub.a"} and lazy["pkg.sub.b"] == {"pkg.sub.c"}
    assert cycles(lazy) == [["pkg.sub.a", "pkg.sub.b", "pkg.sub.c"]]
