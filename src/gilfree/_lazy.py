"""Module attributes imported from another module on first use (PEP 562), so that importing a
module does not import what only some of its names need."""

import importlib


def lazy_attributes(module_globals, names, source):
    """A module ``__getattr__`` for the module whose globals are `module_globals`: each name in
    `names` is taken from module `source` (imported then) and cached in the module."""
    modname = module_globals["__name__"]

    def __getattr__(name):
        if name not in names:
            raise AttributeError("module %r has no attribute %r" % (modname, name))
        value = getattr(importlib.import_module(source), name)
        module_globals[name] = value
        return value

    return __getattr__
