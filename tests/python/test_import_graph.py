"""gilfree's modules import each other in one direction: the import graph of the package has no
cycle. Static: every ``import`` / ``from ... import`` statement of every module, at module level
or inside a function, is an edge (a function-level import is still a dependency; only its timing
differs). ``from gilfree import X`` is an edge to gilfree.X when X is a submodule, else to the
package itself."""

import ast
import pathlib

import gilfree

ROOT = pathlib.Path(gilfree.__file__).parent


def _modules():
    """{module name: source path} of the package's Python modules."""
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _resolve(name, level, here, is_package):
    """Absolute module name of an import of `name` at `level` from module `here`."""
    if level == 0:
        return name
    base = here.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _edges(mods):
    known = set(mods) | {"gilfree._core"}
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(node.module or "", node.level, mod, is_pkg)
                for a in node.names:
                    sub = src + "." + a.name
                    targets.append(sub if sub in known else src)
            for t in targets:
                # `import gilfree.x.y` depends on gilfree.x.y (its parents are packages)
                while t not in known and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != mod:
                    graph[mod].add(t)
                elif t == mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph):
    """The strongly connected components with more than one module (or a self-import)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_imports_are_edges():
    mods = _modules()
    graph = _edges(mods)
    # context.py imports gilfree.pool inside BaseContext.Pool: still an edge
    assert "gilfree.pool" in graph["gilfree.context"]
    assert "gilfree.process" in graph["gilfree.context"]


def test_no_import_cycles():
    graph = _edges(_modules())
    cycles = _cycles(graph)
    assert cycles == [], "import cycles in gilfree: %s" % (
        "; ".join(" <-> ".join(c) for c in cycles))


def test_submodules_below_context():
    """Nothing that context.py builds objects from imports context.py (or the package)."""
    graph = _edges(_modules())
    for mod in ("gilfree.process", "gilfree.managers", "gilfree.shared_memory",
                "gilfree.synchronize", "gilfree.queues", "gilfree.pool"):
        assert "gilfree.context" not in graph[mod], mod
        assert "gilfree" not in graph[mod], mod
