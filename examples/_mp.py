"""Run the examples on the standard library: ``GILFREE_EXAMPLES_STDLIB=1 python seed000_...py``.

Every example starts with ``import _mp`` and then imports gilfree exactly as a user would
(``import gilfree as multiprocessing``, ``from gilfree import Pool``, ``gilfree.ProcessPoolExecutor``).
With GILFREE_EXAMPLES_STDLIB=1 this module first puts a stand-in ``gilfree`` module into
``sys.modules`` that is the standard library (multiprocessing plus concurrent.futures'
executors), so the very same script runs on both.  Without it, nothing happens here.

It also provides ``fast(seconds)``: with EXAMPLES_FAST=1 the tutorials' sleeps are scaled down
(x0.1) so the test suite runs quickly; their order (and so the programs' semantics) is kept.
"""

import os
import sys

STDLIB = os.environ.get("GILFREE_EXAMPLES_STDLIB") == "1"
FAST = os.environ.get("EXAMPLES_FAST") == "1"


def fast(seconds):
    """The tutorial's sleep, scaled by 0.1 when EXAMPLES_FAST=1."""
    return seconds * 0.1 if FAST else seconds


def _install_stdlib_standin():
    import concurrent.futures
    import multiprocessing
    import types

    mod = types.ModuleType("gilfree", "standard-library stand-in (GILFREE_EXAMPLES_STDLIB=1)")
    for name in multiprocessing.__all__:
        setattr(mod, name, getattr(multiprocessing, name))
    mod.ProcessPoolExecutor = concurrent.futures.ProcessPoolExecutor
    mod.ThreadPoolExecutor = concurrent.futures.ThreadPoolExecutor
    mod.STDLIB_STANDIN = True
    sys.modules["gilfree"] = mod


if STDLIB and "gilfree" not in sys.modules:
    _install_stdlib_standin()
