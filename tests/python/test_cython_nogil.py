"""Seed 004's Cython ``nogil`` countdown (examples/seed004_countdown_nogil.pyx) built by
gilfree.demo.nogil with Cython from PyPI, and the demo's row for it.  Skipped, with the
reason, where there is no Cython or no C compiler (the example itself also runs in
test_examples.py)."""

import os
import sys
import threading

import pytest

from gilfree.demo import nogil, runners

HERE = os.path.dirname(os.path.abspath(__file__))
PYX = os.path.join(HERE, "..", "..", "examples", nogil.SEED_PYX)


@pytest.fixture
def built(tmp_path, monkeypatch):
    ok, why = nogil.available()
    if not ok:
        pytest.skip("cannot build Cython modules here: %s" % why)
    monkeypatch.setenv("GILFREE_CYTHON_CACHE", str(tmp_path))
    if os.path.exists(PYX):  # the source tree's
        return nogil.build(PYX)
    return nogil.countdown_module()  # the copy installed with the package


@pytest.mark.timeout(300)
def test_countdown_counts_down(built):
    assert built.countdown(1_000_000) == 0
    assert built.countdown(0) == 0
    assert built.countdown(-5) == -5
    with pytest.raises(TypeError):
        built.countdown("10")


@pytest.mark.timeout(300)
def test_countdown_releases_the_gil(built):
    """While a thread runs the compiled countdown, the main thread runs Python code: with
    the GIL held all along it could not take one step until the countdown returned."""
    started = threading.Event()

    def run():
        started.set()
        built.countdown(20_000_000_000)  # seconds of work: far longer than the loop below

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait(30)
    steps = 0
    while steps < 10_000:  # Python bytecode: needs the GIL
        steps += 1
    assert t.is_alive()  # we got the GIL while the countdown still ran
    t.join(600)


@pytest.mark.timeout(300)
def test_build_is_cached(built, tmp_path):
    so = built.__file__
    assert so.startswith(str(tmp_path)) and os.path.exists(so)
    mtime = os.stat(so).st_mtime_ns
    again = nogil.build(PYX) if os.path.exists(PYX) else nogil.countdown_module()
    assert again.__file__ == so and os.stat(so).st_mtime_ns == mtime


def test_installed_copy_builds_the_same_source():
    here = os.path.dirname(nogil.__file__)
    installed = os.path.join(here, nogil.SEED_PYX)
    assert os.path.exists(installed) or os.path.exists(PYX)
    if os.path.exists(installed) and os.path.exists(PYX):
        with open(installed, "rb") as a, open(PYX, "rb") as b:
            assert a.read() == b.read()


def test_reasons_when_it_cannot_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "Cython", None)  # import Cython -> ImportError
    ok, why = nogil.available()
    assert not ok and "Cython is not installed" in why
    with pytest.raises(RuntimeError, match="Cython is not installed"):
        nogil.build(PYX)
    r = runners.NogilThreadRunner()
    assert r.available() == (False, why)
    with pytest.raises(runners.Unsupported):
        with r.session(2):
            pass
    monkeypatch.delitem(sys.modules, "Cython")
    pytest.importorskip("Cython")
    monkeypatch.setattr(nogil.sysconfig, "get_config_var",
                        lambda k: "no-such-cc-xyz" if k == "CC" else None)
    ok, why = nogil.available()
    assert not ok and "no C compiler" in why


@pytest.mark.timeout(300)
def test_demo_row_runs_threads_on_the_compiled_countdown(built, tmp_path):
    r = runners.NogilThreadRunner()
    assert r.available() == (True, "")
    with r.session(2) as s:
        assert s.map(s.nogil_countdown, [100_000, 200_000]) == [0, 0]
