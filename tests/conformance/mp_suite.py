"""Load CPython's own multiprocessing test suite with every tested object from gilfree.

The suite is the interpreter's ``test._test_multiprocessing`` (Debian: apt package
``libpython3.11-testsuite``). :func:`load` executes its source in the namespace of one of two
importable modules, ``mp_suite_gilfree`` or ``mp_suite_stdlib``, and installs the test classes
there with the suite's own ``install_tests_in_module_dict``. Because the classes and helper
functions are named after that module, a spawned child that unpickles a test's target imports
the same module by name and gets the same objects.

For the gilfree target, the namespace's ``__builtins__`` carries an ``__import__`` that maps
``multiprocessing`` and ``multiprocessing.X`` to ``gilfree`` and ``gilfree.X``: every import
statement the suite's code runs (module level and inside test functions) sees gilfree -- the
module global ``multiprocessing``, the mixins' Process/Queue/Lock/Manager/... attributes,
``util``, ``reduction``, ``shared_memory``, ``resource_tracker``, ``connection.wait``, ... --
while gilfree itself and the rest of the standard library keep the real ``multiprocessing``.

A name the suite imports with ``from multiprocessing.X import name`` at module level that gilfree
does not have would stop the whole suite from loading; it is replaced by a *stand-in* (a subclass
of the standard library's class, or a function, that raises ``NotImplementedError`` when used),
so that only the tests using it fail. :data:`STAND_INS` lists them; the runner reports them.
"""

import builtins
import importlib
import importlib.util
import os

# (module, name) pairs replaced by stand-ins in this process (reported by the runner).
STAND_INS = []

SUITE = "test._test_multiprocessing"


def suite_path():
    """The path of the interpreter's test._test_multiprocessing (ImportError if absent)."""
    spec = importlib.util.find_spec(SUITE)
    if spec is None or spec.origin is None:
        raise ImportError("%s is not installed (Debian: apt-get install "
                          "libpython3.11-testsuite)" % SUITE)
    return spec.origin


def _gilfree_name(name):
    """'multiprocessing.X' -> 'gilfree.X'; None for any other module name."""
    if name == "multiprocessing" or name.startswith("multiprocessing."):
        return "gilfree" + name[len("multiprocessing"):]
    return None


def _stand_in(modname, name):
    """An object standing for gilfree's missing `modname`.`name`: raises when used."""
    std = getattr(importlib.import_module("multiprocessing" + modname[len("gilfree"):]), name)
    msg = "%s.%s does not exist in gilfree" % (modname, name)

    def missing(*args, **kwds):
        raise NotImplementedError(msg)

    if isinstance(std, type):
        value = type(name, (std,), {"__init__": missing, "__module__": modname,
                                    "__doc__": msg})
    elif callable(std):
        value = missing
        value.__name__ = name
    else:
        raise ImportError(msg)
    STAND_INS.append((modname, name))
    return value


class _View:
    """What ``from multiprocessing.X import a, b`` receives: gilfree.X's attributes, with
    stand-ins for the names gilfree.X lacks."""

    def __init__(self, module, names):
        self.__name__ = module.__name__
        for n in names:
            try:
                setattr(self, n, getattr(module, n))
            except AttributeError:
                try:
                    setattr(self, n, importlib.import_module(module.__name__ + "." + n))
                except ModuleNotFoundError:
                    setattr(self, n, _stand_in(module.__name__, n))


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    """__import__ for the suite's namespace: multiprocessing[.X] -> gilfree[.X]."""
    gname = _gilfree_name(name) if level == 0 else None
    if gname is None:
        return builtins.__import__(name, globals, locals, fromlist, level)
    mod = importlib.import_module(gname)
    if not fromlist:
        return importlib.import_module("gilfree")
    names = [n for n in fromlist if n != "*"]
    if "*" in fromlist or all(hasattr(mod, n) for n in names):
        return mod
    return _View(mod, names)


def load(globs, target):
    """Execute the suite's source for `target` 'gilfree' or 'stdlib' and install its test
    classes (all types) in `globs` (a module's namespace), with every name the suite defines.
    The suite runs in its own dict (install_tests_in_module_dict iterates it) whose __name__ is
    the module's, so pickles of its functions and classes name that module. The start method
    the classes' setUpModule selects is $GF_SUITE_START_METHOD (default 'fork')."""
    path = suite_path()
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    ns = {"__name__": globs["__name__"], "__file__": path, "__doc__": None}
    if target == "gilfree":
        bi = dict(vars(builtins))
        bi["__import__"] = _import
        ns["__builtins__"] = bi
    elif target != "stdlib":
        raise ValueError("target must be 'gilfree' or 'stdlib'")
    exec(code, ns)
    start_method = os.environ.get("GF_SUITE_START_METHOD", "fork")
    ns["install_tests_in_module_dict"](globs, start_method)
    for k, v in ns.items():
        if not (k.startswith("__") and k.endswith("__")):
            globs.setdefault(k, v)
