"""Every public name of gilfree has a docstring: module-level public functions and classes of
the package's public modules and of gilfree._core, and the public methods and properties those
classes define themselves (inherited ones from the standard library are documented there)."""

import importlib
import inspect

import pytest

MODULES = ["gilfree", "gilfree._core", "gilfree.connection", "gilfree.queues",
           "gilfree.synchronize", "gilfree.process", "gilfree.context", "gilfree.pool",
           "gilfree.futures", "gilfree.managers", "gilfree.shared_memory",
           "gilfree.sharedctypes", "gilfree.containers", "gilfree.util", "gilfree.reduction",
           "gilfree.heap", "gilfree.resource_tracker", "gilfree.resource_sharer", "gilfree.dummy",
           "gilfree.dummy.connection", "gilfree.cluster", "gilfree.cluster.pool",
           "gilfree.cluster.dask", "gilfree.cluster.demo"]

# Names allowed to lack a docstring for now (none: every public name is documented).
KNOWN_MISSING = set()


def _public_names(mod):
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n in vars(mod) if not n.startswith("_")]
    return names


def _own(obj, mod):
    """True for objects defined by gilfree (not re-exports of the standard library's)."""
    return (getattr(obj, "__module__", "") or "").startswith("gilfree")


def _undocumented():
    missing = set()
    seen = set()
    for modname in MODULES:
        mod = importlib.import_module(modname)
        if not (mod.__doc__ or "").strip():
            missing.add(modname)
        for name in _public_names(mod):
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not _own(obj, mod):
                continue
            if not (callable(obj) or isinstance(obj, type)):
                continue
            if isinstance(obj, type):
                qual = "%s.%s" % (obj.__module__, obj.__qualname__)
            else:
                qual = "%s.%s" % (modname, name)
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if not (getattr(obj, "__doc__", None) or "").strip():
                missing.add(qual)
            if not isinstance(obj, type):
                continue
            for mname, member in vars(obj).items():
                if mname.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, type):  # a class attribute naming a class
                    continue
                if not (callable(member) or isinstance(member, property)
                        or inspect.isdatadescriptor(member)):
                    continue
                if not (getattr(member, "__doc__", None) or "").strip():
                    missing.add("%s.%s" % (qual, mname))
    return missing


def test_public_api_has_docstrings():
    missing = sorted(_undocumented() - KNOWN_MISSING)
    assert not missing, "public names without a docstring:\n  " + "\n  ".join(missing)

