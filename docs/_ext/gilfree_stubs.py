"""Signatures for the API reference from gilfree's ``.pyi`` stubs (used by gilfree_api.py).

autodoc reads docstrings from the installed package, but the C extension's functions and
types have no introspectable signatures and the Python layer has no annotations: the typed
signatures live in the stubs (``gilfree/*.pyi``, installed next to the modules). For every
documented name that a stub declares, the reference shows the stub's signature (parameters
with annotations, return annotation; ``self``/``cls`` dropped); names without a stub keep the
signature autodoc finds.

A stub module ``gilfree/<mod>.pyi`` describes ``gilfree.<mod>``; class members are looked up on
the class, then on the stub classes it derives from (``class Queue(_core.Ring)``).
"""

import ast
import copy
import importlib.util
import os

_SKIP_DECORATORS = {"overload", "property"}


def _dotted(node):
    """'a.b.c' for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Qualify(ast.NodeTransformer):
    """Rewrite the names of gilfree objects in an annotation to their full dotted names
    (``Condition`` -> ``gilfree.synchronize.Condition``), so that each links to its one entry
    in the reference; other names (typing's, the standard library's) are left as written."""

    def __init__(self, stub):
        self.stub = stub

    def _target(self, dotted):
        head, _, rest = dotted.partition(".")
        target = self.stub.aliases.get(head)
        if target is None and head in self.stub.classes:
            target = self.stub.modname + "." + head
        if target is None or not target.startswith(self.stub.package + "."):
            return None
        return ast.parse(target + ("." + rest if rest else ""), mode="eval").body

    def visit_Name(self, node):
        return self._target(node.id) or node

    def visit_Attribute(self, node):
        dotted = _dotted(node)
        new = self._target(dotted) if dotted else None
        return new or self.generic_visit(node)


def _signature(fn, drop_first, stub=None):
    """(args, return annotation) text of a stub FunctionDef."""
    args = copy.deepcopy(fn.args)
    returns = copy.deepcopy(fn.returns)
    if drop_first:
        if args.posonlyargs:
            args.posonlyargs = args.posonlyargs[1:]
        elif args.args:
            args.args = args.args[1:]
    if stub is not None:
        q = _Qualify(stub)
        for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if a is not None and a.annotation is not None:
                a.annotation = q.visit(a.annotation)
        if returns is not None:
            returns = q.visit(returns)
    ret = ast.unparse(returns) if returns is not None else None
    return "(%s)" % ast.unparse(args), ret


def _decorators(fn):
    return {_dotted(d) for d in fn.decorator_list}


class _StubModule:
    """The declarations of one .pyi file: functions, classes (members, bases), imports."""

    def __init__(self, modname, path):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        self.modname = modname
        self.package = modname.split(".")[0]
        self.funcs = {}
        self.classes = {}
        self.aliases = {}  # local name -> dotted module name (import x as y / from p import m)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                if not (_decorators(node) & _SKIP_DECORATORS):
                    self.funcs.setdefault(node.name, node)
            elif isinstance(node, ast.ClassDef):
                members = {}
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef) and \
                            not (_decorators(sub) & _SKIP_DECORATORS):
                        members.setdefault(sub.name, sub)
                bases = [_dotted(b.value if isinstance(b, ast.Subscript) else b)
                         for b in node.bases]
                self.classes[node.name] = (members, [b for b in bases if b])
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    self.aliases[a.asname or a.name] = node.module + "." + a.name
            elif isinstance(node, ast.Import):
                for a in node.names:
                    self.aliases[a.asname or a.name] = a.name


class StubIndex:
    """Signatures of gilfree's public names, read from the installed package's stubs."""

    def __init__(self, package="gilfree"):
        spec = importlib.util.find_spec(package)
        self.package = package
        self.dir = os.path.dirname(spec.origin)
        self.modules = {}

    def module(self, modname):
        """The parsed stub of module `modname`, or None."""
        if modname not in self.modules:
            rel = modname.split(".")[1:]
            candidates = [os.path.join(self.dir, *rel, "__init__.pyi")]
            if rel:
                candidates.insert(0, os.path.join(self.dir, *rel) + ".pyi")
            found = [p for p in candidates if os.path.exists(p)]
            self.modules[modname] = _StubModule(modname, found[0]) if found else None
        return self.modules[modname]

    def _resolve_class(self, stub, dotted):
        """(stub module, class name) for a base class written as `dotted` in `stub`; (None,
        None) for a class outside gilfree (the standard library's, typing's)."""
        head, _, rest = dotted.partition(".")
        target = stub.aliases.get(head)
        if target is None:
            return (stub, dotted) if not rest else (None, None)
        mod, _, cls = (target + ("." + rest if rest else "")).rpartition(".")
        if mod != self.package and not mod.startswith(self.package + "."):
            return None, None
        return self.module(mod), cls

    def _member_where(self, stub, clsname, member, depth=0):
        """(stub module, FunctionDef) of `member` on class `clsname` or its stub bases."""
        if stub is None or clsname not in stub.classes or depth > 8:
            return None
        members, bases = stub.classes[clsname]
        if member in members:
            return stub, members[member]
        for b in bases:
            bstub, bcls = self._resolve_class(stub, b)
            found = self._member_where(bstub, bcls, member, depth + 1)
            if found is not None:
                return found
        return None

    def declares(self, fullname, member):
        """True if the stub of class `fullname` itself (not a base) declares `member`."""
        modname, _, cls = fullname.rpartition(".")
        stub = self.module(modname)
        return stub is not None and cls in stub.classes and member in stub.classes[cls][0]

    def lookup(self, fullname, objtype):
        """(args, return) for the documented object `fullname`, or None."""
        parts = fullname.split(".")
        # the longest prefix that names a module with a stub
        for i in range(len(parts) - 1, 0, -1):
            stub = self.module(".".join(parts[:i]))
            if stub is not None:
                break
        else:
            return None
        rest = parts[i:]
        if len(rest) == 1:
            name = rest[0]
            if objtype == "class" and name in stub.classes:
                for ctor in ("__init__", "__new__"):
                    found = self._member_where(stub, name, ctor)
                    if found is not None:
                        args, _ = _signature(found[1], drop_first=True, stub=found[0])
                        return args, None
                return None
            fn = stub.funcs.get(name)
            return _signature(fn, drop_first=False, stub=stub) if fn is not None else None
        if len(rest) == 2:
            found = self._member_where(stub, rest[0], rest[1])
            if found is None:
                return None
            static = "staticmethod" in _decorators(found[1])
            return _signature(found[1], drop_first=not static, stub=found[0])
        return None


_INDEX = None


def index():
    """The StubIndex of the installed gilfree (parsed once per build process)."""
    global _INDEX
    if _INDEX is None:
        _INDEX = StubIndex()
    return _INDEX


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
