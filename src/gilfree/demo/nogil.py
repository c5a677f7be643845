"""Build and load a Cython module (seed 004's ``nogil`` countdown) with Cython from PyPI.

``build(pyx)`` compiles ``pyx`` with Cython to C, then to an extension module with the C
compiler Python was built with, into a cache directory (``GILFREE_CYTHON_CACHE``, default
``$XDG_CACHE_HOME/gilfree/cython``, else ``~/.cache/gilfree/cython``) keyed by the source,
Cython's version and the interpreter, and imports it.  ``available()`` says whether that can
work here (Cython importable, a C compiler, Python's headers) and, if not, why.

The seed's module is ``examples/seed004_countdown_nogil.pyx``; it is installed with the
package as ``gilfree/demo/seed004_countdown_nogil.pyx`` (``countdown_module()``).
"""

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

__all__ = ["available", "build", "countdown_module", "SEED_PYX"]

SEED_PYX = "seed004_countdown_nogil.pyx"


def _compiler():
    return shlex.split(sysconfig.get_config_var("CC") or "cc")


def available():
    """(True, "") when a .pyx can be built here, else (False, the reason)."""
    try:
        import Cython  # noqa: F401
    except ImportError:
        return False, "Cython is not installed (pip install -r requirements/demo.txt)"
    cc = _compiler()
    if not cc or not shutil.which(cc[0]):
        return False, "no C compiler (%s not found)" % (cc[0] if cc else "CC")
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        return False, "no Python headers (Python.h; install python3-dev)"
    return True, ""


def _cache_dir():
    d = os.environ.get("GILFREE_CYTHON_CACHE")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        d = os.path.join(base, "gilfree", "cython")
    os.makedirs(d, exist_ok=True)
    return d


def _run(cmd, what):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%s):\n%s%s" % (what, " ".join(cmd), proc.stdout,
                                                      proc.stderr))


def build(pyx):
    """The extension module built from the Cython source file ``pyx`` (named after its
    file), compiled once per source and interpreter and cached.  Raises RuntimeError with
    the reason (``available()``'s, or the compiler's output)."""
    ok, why = available()
    if not ok:
        raise RuntimeError(why)
    import Cython

    name = os.path.splitext(os.path.basename(pyx))[0]
    with open(pyx, "rb") as f:
        src = f.read()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    key = hashlib.sha256(b"\0".join([src, Cython.__version__.encode(), sys.version.encode(),
                                     suffix.encode()])).hexdigest()[:16]
    out_dir = os.path.join(_cache_dir(), key)
    target = os.path.join(out_dir, name + suffix)
    if not os.path.exists(target):
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            c_file = os.path.join(tmp, name + ".c")
            _run([sys.executable, "-m", "cython", "-3", "-o", c_file, pyx], "cython")
            so = os.path.join(tmp, name + suffix)
            _run(_compiler() + ["-shared", "-fPIC", "-O2",
                                "-I" + sysconfig.get_paths()["include"], c_file, "-o", so],
                 "the C compiler")
            os.replace(so, target)  # atomic: a concurrent build finds a whole file
    spec = importlib.util.spec_from_file_location(name, target)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def countdown_module():
    """Seed 004's Cython module (``countdown(n)`` with the GIL released), built and loaded:
    the copy installed with the package, else the source tree's examples/."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, SEED_PYX),
                 os.path.join(here, "..", "..", "..", "examples", SEED_PYX)):
        if os.path.exists(path):
            return build(os.path.normpath(path))
    raise RuntimeError("%s is not installed with gilfree" % SEED_PYX)
