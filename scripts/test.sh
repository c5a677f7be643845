#!/usr/bin/env bash
# The whole test suite: C core tests under ASan+UBSan (with the standalone fuzz drivers and the
# C examples), the lock/ring tests under TSan, valgrind on the arena and ring tests, libFuzzer on
# the frame and ring parsers, atheris on the decode paths from Python, the pool's threaded tests
# under TSan, then pytest on the installed package (which runs the seed
# examples, the documentation's code blocks, the cluster suite on a real Dask cluster and
# the Celery example on a real redis-server, all started and stopped by the tests) and the fault
# suite (tests/faults: killed workers, Ctrl-C, killed lock holders / writers, bad input), with the
# documentation site built in between, and the conformance gate (CPython's own multiprocessing
# suite run against gilfree, tests/conformance/).
export GILFREE_NEED_VALGRIND=1 GILFREE_NEED_CLANG=1 GILFREE_NEED_REDIS=1
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
"$VPY" -m pip install -q -r "$ROOT/requirements/test.txt"
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

echo "== C core: ASan + UBSan"
bash scripts/ctests.sh asan
echo "== C core: TSan (locks, sync, ring)"
bash scripts/ctests.sh tsan
echo "== C core: valgrind"
bash scripts/ctests.sh valgrind
echo "== Fuzzing (libFuzzer, ${GILFREE_FUZZ_SECONDS:-30} s per target)"
bash scripts/ctests.sh libfuzzer
echo "== Fuzzing from Python (atheris on the decode paths, ${GILFREE_FUZZ_PY_SECONDS:-20} s per target)"
GILFREE_VENV="$VENV" bash scripts/fuzz_py.sh
echo "== Python suite and fault suite against the extension built with ASan + UBSan"
GILFREE_VENV="$VENV" bash scripts/pytest_asan.sh faults  # tests/python and the fault suite
echo "== Python pool tests that use threads, against the extension built with TSan"
GILFREE_VENV="$VENV" bash scripts/pytest_tsan.sh

echo "== Python package"
"$VPY" -m pip install -q --no-build-isolation "$ROOT"

# The documentation site, against the package just installed (autodoc imports it); every
# warning is an error. Its code blocks are run by tests/python/test_docs.py below.
echo "== Documentation (Sphinx -W: docs/ -> build/docs-html)"
rm -rf "$ROOT/build/docs-html"
"$VPY" -m sphinx -W --keep-going -q -b html "$ROOT/docs" "$ROOT/build/docs-html"

echo "== Conformance: CPython's test._test_multiprocessing on gilfree (fork; spawn: processes group)"
# The interpreter's own multiprocessing suite; Debian ships it in libpython3.X-testsuite.
if ! "$VPY" -c 'import test._test_multiprocessing' >/dev/null 2>&1; then
    pyver="$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "libpython$pyver-testsuite"
fi
# Fails on a regression from tests/conformance/baseline.json, a hang or a /dev/shm entry left.
"$VPY" "$ROOT/tests/conformance/run_mp_suite.py" --check --start fork
"$VPY" "$ROOT/tests/conformance/run_mp_suite.py" --check --start spawn --only processes

echo "== Python suite and the fault suite (tests/faults)"
# Run from tests/ so that the source tree is not shadowing the installed package.
cd "$ROOT/tests"
exec "$VPY" -m pytest -p no:cacheprovider -q python faults "$@"
