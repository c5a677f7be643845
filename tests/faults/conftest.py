"""Fixtures of the fault suite: the leak check and the forker of tests/python/conftest.py
(loaded from there, not copied: one contract for both suites) and the arena-block counter.
The dict writer, queue producer and lock holder leak tests, once strict xfails waiting for
reclaim after death (issue 12 item 1), are normal tests since the reference ledger."""

import importlib.util
import pathlib
import sys

import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "python" / "conftest.py"
_spec = importlib.util.spec_from_file_location("gilfree_tests_common", _PATH)
common = importlib.util.module_from_spec(_spec)
sys.modules["gilfree_tests_common"] = common
_spec.loader.exec_module(common)

# Everything tests/python/conftest.py defines is defined here too: its fixtures (no_leaks,
# autouse: no child process, no /dev/shm entry left; fork) and helpers (live_blocks, Forker).
# Both directories' conftest modules are named "conftest" and a session that collects both
# keeps the last one imported as sys.modules["conftest"], which tests/python's
# `from conftest import live_blocks` then finds: a superset works either way.
globals().update({k: v for k, v in vars(common).items() if not k.startswith("__")})
no_leaks = common.no_leaks
fork = common.fork

@pytest.fixture
def arena_blocks():
    """Live arena blocks before the test; call the returned function for the growth since."""
    before = common.live_blocks()
    return lambda: common.live_blocks() - before
