"""The package's imports run one way: units/config <- traces <- workload <- engine <- runner <-
sweep/report <- cli. A module may import its own layer or lower ones, never a higher one (not even
inside a function), and no two modules may import each other, directly or around a longer cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mshare_hw"
KERNELS = ROOT / "kernels"

# Top-level names under mshare_hw and their layer (lowest first).
# The compiled modules sit just below the engine's Python side: they take their configuration as
# arguments and import nothing above the foundation.
LAYERS: dict[str, float] = {
    "units": 0, "names": 0, "counters": 0, "fileio": 0, "version": 0, "config": 0,
    "traces": 1,
    "workload": 2,
    "_engine": 2.5, "_probes": 2.5,
    "engine": 3, "analysis": 3,
    "reference": 3.5,  # the executable specification, built on the engine's parameters and layout
    "results": 4, "runner": 4,
    "sweep": 5, "report": 5, "calibrate": 5,
    "cli": 6, "__main__": 6,
}  # fmt: skip
# mshare_hw/__init__.py: the public names, imported lazily. It sits above everything: its own imports
# are exempt, and no module of the package may import it.
FACADE = "mshare_hw"


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["mshare_hw", *parts])


def imported_modules(source: str, module: str, is_package: bool, known: set[str] | None = None) -> set[str]:
    """Every mshare_hw module `source` imports, at any depth (function bodies included). With `known`,
    `from package import name` counts as importing the submodule alone where `package.name` is one."""
    out: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "mshare_hw")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mshare_hw":
                continue
            subs = {f"{target}.{a.name}" for a in node.names}
            if known is not None and subs <= known:
                out.update(subs)
            else:
                out.add(target)
                out.update(subs)
    return out


def layer_of(module: str) -> float | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def layer_violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Imports against the layer order and import cycles among `sources` (module -> (text, is_package))."""
    known = set(sources)
    graph: dict[str, set[str]] = {}
    problems: list[str] = []
    for mod, (text, is_pkg) in sources.items():
        deps = {d for d in imported_modules(text, mod, is_pkg, known) if d in known and d != mod}
        if mod == FACADE:
            graph[mod] = set()
            continue
        graph[mod] = deps
        if FACADE in deps:
            problems.append(f"{mod} imports the package facade {FACADE} (import the module that defines the name)")
        mine = layer_of(mod)
        if mine is None:
            problems.append(f"{mod}: not assigned to a layer (add it to LAYERS)")
            continue
        for d in sorted(deps):
            theirs = layer_of(d)
            if theirs is not None and theirs > mine:
                problems.append(f"{mod} (layer {mine}) imports {d} (layer {theirs})")
    # cycles: Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                problems.append("import cycle: " + " <-> ".join(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return problems


def package_sources() -> dict[str, tuple[str, bool]]:
    sources = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        if "configs" in p.relative_to(PACKAGE).parts:
            continue
        sources[module_name(p, PACKAGE)] = (p.read_text(), p.name == "__init__.py")
    for p in sorted(KERNELS.glob("*.pyx")):  # the compiled modules: mshare_hw.<stem>
        text = p.read_text()
        sources[f"mshare_hw.{p.stem}"] = (_python_lines(text), False)
    sources["mshare_hw._probes"] = ("", False)  # kernels/probes/*.c: plain C, imports nothing
    return sources


def _python_lines(pyx: str) -> str:
    """The plain Python import statements of a .pyx file (cimports and C declarations dropped)."""
    keep = [ln for ln in pyx.splitlines() if ln.startswith(("import ", "from ")) and " cimport " not in ln]
    return "\n".join(keep)


def test_the_package_imports_run_one_way():
    problems = layer_violations(package_sources())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "module, text, expected",
    [
        # config importing the workload layer, as config/experiment.py once imported workload/manifest.py
        ("mshare_hw.config.experiment", "from mshare_hw.workload.manifest import fill", "layer 0) imports"),
        # the same inside a function body
        ("mshare_hw.traces.cli", "def f():\n    from mshare_hw.workload.build import x", "layer 1) imports"),
        # the compiled engine importing its Python configuration layer is fine; the workload importing it is not
        ("mshare_hw.workload.events", "from mshare_hw._engine import EventDraws", "layer 2) imports"),
    ],
)
def test_a_back_import_is_reported(module, text, expected):
    sources = {
        module: (text, False),
        "mshare_hw.workload.manifest": ("", False),
        "mshare_hw.workload.build": ("", False),
        "mshare_hw._engine": ("", False),
    }
    problems = layer_violations(sources)
    assert any(expected in p and p.startswith(module) for p in problems), problems


def test_a_cycle_within_a_layer_is_reported():
    sources = {
        "mshare_hw.engine.a": ("from mshare_hw.reference import b", False),
        "mshare_hw.reference.b": ("import mshare_hw.engine.a", False),
    }
    assert any(p.startswith("import cycle") for p in layer_violations(sources))


def test_relative_imports_resolve():
    assert imported_modules("from .caches import C", "mshare_hw.reference.walker", False) >= {
        "mshare_hw.reference.caches"
    }
    assert imported_modules("from . import tlb", "mshare_hw.reference", True) >= {"mshare_hw.reference.tlb"}
