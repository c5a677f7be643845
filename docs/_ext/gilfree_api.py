"""Sphinx extension: the API reference of one gilfree module, from the installed package.

``.. gilfree-automodule:: gilfree.pool`` (an RST directive: in a MyST page, inside
``{eval-rst}``) documents the module's docstring and its public names (its ``__all__``, else
its names without a leading underscore) that gilfree itself defines and that are not
documented under another module of the reference:

* re-exports of the standard library's objects (``gilfree.pool.TimeoutError``) are left out
  (the standard library documents them);
* an object re-exported by several gilfree modules is documented once, under the module that
  defines it (``WorkerLostError`` under ``gilfree.pool``, not ``gilfree.futures``); an object
  defined in a private module (``gilfree._something``) is documented where it is exported;
* submodules and plain data (constants) are left out.

A class is documented with its public members, its own and those it inherits from gilfree
classes (``Queue`` shows the shared-memory ring's ``put_many``), not those it inherits from
the standard library (``Process.start``: documented there). Each is an explicit autodoc
directive whose signature, where a stub declares one, is the stub's (gilfree_stubs.py): the
extension's C methods have no signature autodoc could find.
"""

import importlib
import inspect
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import gilfree_stubs

PACKAGE = "gilfree"


def _is_ours(modname):
    return modname == PACKAGE or (modname or "").startswith(PACKAGE + ".")


def _documented_home(obj, documented):
    """The documented module that defines `obj` and exports it under its own name, else None."""
    home = getattr(obj, "__module__", None)
    if home not in documented:
        return None
    name = getattr(obj, "__name__", None)
    try:
        mod = importlib.import_module(home)
    except ImportError:
        return None
    exported = getattr(mod, "__all__", None)
    if name is None or (exported is not None and name not in exported):
        return None
    try:
        same = getattr(mod, name, None) == obj  # == : bound methods are new objects each time
    except Exception:
        same = False
    return home if same else None


def module_members(modname, documented):
    """The names `.. gilfree-automodule:: modname` documents (see the module docstring)."""
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n in vars(mod) if not n.startswith("_")]
    out = []
    for name in names:
        obj = getattr(mod, name)
        if inspect.ismodule(obj) or not (isinstance(obj, type) or callable(obj)):
            continue
        if not _is_ours(getattr(obj, "__module__", None)):
            continue
        home = _documented_home(obj, documented)
        if home is not None and home != modname:
            continue
        out.append(name)
    return out


def _doc(obj):
    return (getattr(obj, "__doc__", None) or "").strip()


def class_members(cls):
    """[(name, kind)] of the public members a class's entry lists, in definition order: what
    the class and its gilfree bases define (kind 'method' or 'attribute'), documented ones."""
    out, seen = [], set()
    for klass in cls.__mro__:
        if klass is object or not _is_ours(getattr(klass, "__module__", None)):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, type):
                continue
            if isinstance(member, property) or inspect.isdatadescriptor(member):
                if _doc(member):
                    out.append((name, "attribute"))
            elif callable(member) and _doc(member):
                out.append((name, "method"))
    return out


class GilfreeAutomodule(SphinxDirective):
    """``.. gilfree-automodule:: MODULE``: MODULE's docstring and own public names."""

    required_arguments = 1
    has_content = False

    def _sig(self, fullname, objtype):
        found = gilfree_stubs.index().lookup(fullname, objtype)
        if found is None:
            return ""
        args, ret = found
        return args + (" -> " + ret if ret else "")

    def _class(self, fullname, cls, directive):
        sig = self._sig(fullname, "class")
        own = [m for m in ("__init__", "__new__") if m in vars(cls)]
        stubs = gilfree_stubs.index()
        if own and not any(stubs.declares(fullname, m) for m in ("__init__", "__new__")):
            sig = ""  # the class has its own constructor that its stub does not describe
        lines = [".. %s:: %s%s" % (directive, fullname, sig), "   :show-inheritance:", ""]
        for name, kind in class_members(cls):
            member = "%s.%s" % (fullname, name)
            if kind == "method":
                lines += ["   .. automethod:: %s%s" % (member, self._sig(member, "method")), ""]
            else:
                lines += ["   .. autoattribute:: %s" % member, ""]
        return lines

    def run(self):
        modname = self.arguments[0]
        documented = set(self.config.gilfree_api_modules)
        if modname not in documented:
            raise self.error("%s is not in gilfree_api_modules (conf.py)" % modname)
        mod = importlib.import_module(modname)
        lines = [".. automodule:: %s" % modname, ""]
        for name in module_members(modname, documented):
            obj = getattr(mod, name)
            full = "%s.%s" % (modname, name)
            if isinstance(obj, type) and obj.__name__ != name:  # an alias (Executor)
                target = "%s.%s" % (obj.__module__, obj.__qualname__)
                if _documented_home(obj, documented) is not None:
                    target = "%s.%s" % (_documented_home(obj, documented), obj.__name__)
                lines += [".. py:class:: %s" % full, "",
                          "   Another name of :class:`%s`." % target, ""]
            elif isinstance(obj, type):
                exc = issubclass(obj, BaseException)
                lines += self._class(full, obj, "autoexception" if exc else "autoclass")
            else:
                lines += [".. autofunction:: %s%s" % (full, self._sig(full, "function")), ""]
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=self.get_source_info()[0]),
                                 node)
        return node.children


_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")
_BULLET = re.compile(r"^\s*\* ")  # a list item's bullet stays a bullet


def _escape_stars(app, what, name, obj, options, lines):
    """Docstrings are plain text with ``literals`` and roles, never *emphasis*: a ``*`` in
    ``f(*args, **kw)`` must not start emphasis (docutils would warn). Escape every ``*``
    outside literals and roles (list bullets stay)."""
    if not _is_ours(name):
        return
    for i, line in enumerate(lines):
        bullet = _BULLET.match(line)
        head, line = (bullet.group(0), line[bullet.end():]) if bullet else ("", line)
        parts = _LITERAL.split(line)
        lines[i] = head + "".join(p if j % 2 else p.replace("*", "\\*")
                                  for j, p in enumerate(parts))


def setup(app):
    app.connect("autodoc-process-docstring", _escape_stars)
    app.add_config_value("gilfree_api_modules", [], "env")
    app.add_directive("gilfree-automodule", GilfreeAutomodule)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
