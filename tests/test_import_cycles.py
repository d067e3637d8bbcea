"""The project's import graph: no cycle between its modules, and no import against the layers.

Layers (lowest first; a module may import its own layer and those below, never one above):
core (`interp`'s loading, prompts, hooks, capture, interventions, runner, scoring, generation,
batching, `Direction`, model sources) -> methods (`probes`, `interp.causal`, `interp.steering`,
`interp.slipping`, `interp.r2d`) -> study (`interp.study`, the pipeline, its stages, the CLI) ->
organisms (a model source: `organisms`) -> the public facade (`interp/__init__`, which registers the
organisms as model sources). Every module must be in the table: a new one is classified here.

The graph is read from the source with `ast`, not by importing: every `import` and `from ... import`
counts, at module level and inside functions (a function-level import only hides a cycle until the
function runs), relative forms resolved against the importing module's package. Imports under
`if TYPE_CHECKING:` never run and are left out.

Edges: `import interp.x` and `from interp import x` (x a submodule) point at `interp.x` only, not at
the package `interp`; `from interp import name` (name not a submodule) points at `interp` (its
`__init__`). So a package `__init__` re-exporting its submodules is no cycle, unless one of those
submodules imports a name from the package `__init__` back.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("interp", "probes", "organisms")

LAYERS = (  # (layer, modules: each one and everything under it), lowest first
    ("core", ("interp.artifacts", "interp.batching", "interp.bridge_check", "interp.capture", "interp.completions", "interp.dataset_readers", "interp.datasets", "interp.direction",
              "interp.direction_files", "interp.distributed", "interp.estimate", "interp.export",
              "interp.errors", "interp.evaluate", "interp.fingerprint", "interp.generation", "interp.hooknames",
              "interp.hooks", "interp.hub", "interp.intervention", "interp.jailbreaks", "interp.lora", "interp.model",
              "interp.placement", "interp.plotting", "interp.progress", "interp.prompts", "interp.provenance", "interp.runner",
              "interp.scoring", "interp.sources", "interp.stats", "interp.threads", "interp.utility", "interp.vocab")),
    ("methods", ("probes", "interp.causal", "interp.steering", "interp.slipping", "interp.r2d")),
    ("study", ("interp.study", "interp.study_files", "interp.outputs", "interp.saved", "interp.under", "interp.summary", "interp.reuse", "interp.pipeline", "interp.stages", "interp.commands", "interp.cli", "interp.cli_checks",
               "interp.gallery", "interp.notebook", "interp.__main__")),
    ("organisms", ("organisms",)),
    ("facade", ()),  # the package `interp` itself (its __init__), matched exactly
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def project_modules(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file of the packages (a package is its __init__)."""
    out = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, skipping the bodies of `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _module_of(name: str, modules) -> str | None:
    """The longest prefix of a dotted name that is a project module (`interp.model.texts` -> `interp.model`)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in modules:
            return cand
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (self-imports dropped)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [_module_of(a.name, modules) for a in node.names]
            else:
                if node.level:  # relative: `from . import x`, `from ..y import z`
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    targets.append(sub if sub in modules else _module_of(src, modules))
            graph[mod] |= {t for t in targets if t and t != mod}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative: no recursion limit)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(sorted(comp))
    return out


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete loop through a component, for the failure message: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & members)
        back = [n for n in nxt if n in seen]
        if back:
            return path[path.index(back[0]):] + [back[0]]
        path.append(next(n for n in nxt if n not in seen))
        seen.add(path[-1])


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (None: not in the table)."""
    if module == "interp":
        return "facade"
    for name, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer into a higher one, as 'a (layer) imports b (layer)'."""
    out = []
    for mod in sorted(graph):
        for dep in sorted(graph[mod]):
            a, b = layer_of(mod), layer_of(dep)
            if a is not None and b is not None and RANK[b] > RANK[a]:
                out.append(f"{mod} ({a}) imports {dep} ({b})")
    return out


# ------------------------------------------------------------------ the checker itself
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_finds_a_function_level_relative_cycle(tmp_path):
    _write(tmp_path, {
        "pk/__init__.py": "from pk.a import f\n",
        "pk/a.py": "def f():\n    from .b import g\n    return g()\n",
        "pk/b.py": "from pk import a\n",
        "pk/c.py": "import pk.a\n",
    })
    mods = project_modules(tmp_path, ("pk",))
    g = import_graph(mods)
    assert g["pk.a"] == {"pk.b"} and g["pk.b"] == {"pk.a"} and g["pk"] == {"pk.a"} and g["pk.c"] == {"pk.a"}
    assert [c for c in strongly_connected(g) if len(c) > 1] == [["pk.a", "pk.b"]]
    assert a_cycle(g, ["pk.a", "pk.b"]) == ["pk.a", "pk.b", "pk.a"]


def test_package_reexport_is_no_cycle_unless_a_submodule_imports_the_package_back(tmp_path):
    _write(tmp_path, {
        "pk/__init__.py": "from pk.a import f\nVERSION = 1\n",
        "pk/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pk import VERSION\n"
                   "def f():\n    return 1\n",
    })
    g = import_graph(project_modules(tmp_path, ("pk",)))
    assert not [c for c in strongly_connected(g) if len(c) > 1], "TYPE_CHECKING imports never run"
    (tmp_path / "pk/a.py").write_text("def f():\n    from pk import VERSION\n    return VERSION\n")
    g = import_graph(project_modules(tmp_path, ("pk",)))
    assert [c for c in strongly_connected(g) if len(c) > 1] == [["pk", "pk.a"]]


# ------------------------------------------------------------------ the project
def test_no_import_cycle_between_project_modules():
    modules = project_modules()
    assert "interp.model" in modules and "probes.heads" in modules
    graph = import_graph(modules)
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    msg = "\n".join(f"{len(c)} modules import each other, e.g. {' -> '.join(a_cycle(graph, c))}" for c in cycles)
    print(msg)
    assert not cycles, "import cycles between the project's modules:\n" + msg


def test_a_planted_import_against_the_layers_is_caught(tmp_path):
    """The real layer table on a small tree of the project's shape: an upward import is caught at
    module level and inside a function, relative or absolute; downward ones pass."""
    _write(tmp_path, {
        "interp/__init__.py": "from interp.model import load\nimport organisms.source\n",
        "interp/model.py": "from interp import hub\n",
        "interp/hub.py": "",
        "interp/capture.py": "",
        "interp/pipeline.py": "from interp.model import load\nfrom probes.heads import rank\n",
        "interp/causal/__init__.py": "",
        "interp/causal/search.py": "from ..model import load\n",
        "probes/__init__.py": "",
        "probes/heads.py": "from interp.capture import capture\n",
        "organisms/__init__.py": "",
        "organisms/source.py": "from interp.model import load\nfrom interp import pipeline\n",
    })
    mods = project_modules(tmp_path, PACKAGES)
    assert layer_violations(import_graph(mods)) == [], "the downward imports are allowed"
    (tmp_path / "interp/model.py").write_text("def load():\n    from organisms import source\n    return source\n")
    (tmp_path / "probes/heads.py").write_text("from interp.pipeline import run\n")
    (tmp_path / "interp/causal/search.py").write_text("from .. import pipeline\n")
    assert layer_violations(import_graph(project_modules(tmp_path, PACKAGES))) == [
        "interp.causal.search (methods) imports interp.pipeline (study)",
        "interp.model (core) imports organisms.source (organisms)",
        "probes.heads (methods) imports interp.pipeline (study)",
    ]


def test_every_module_is_in_the_layer_table():
    unplaced = [m for m in project_modules() if layer_of(m) is None]
    assert not unplaced, f"modules missing from LAYERS (tests/test_import_cycles.py): {unplaced}"
    assert layer_of("interp") == "facade" and layer_of("interp.capture.sites") == "core"
    assert layer_of("interp.cli_checks") == "study" and layer_of("interp.clip") is None


def test_no_import_against_the_layers():
    """Core imports no method, organism or study module; methods no study or organism module; the
    study layer never the organisms (they plug in through interp.sources)."""
    bad = layer_violations(import_graph(project_modules()))
    assert not bad, "imports against the layers:\n" + "\n".join(bad)
