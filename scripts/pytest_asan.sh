#!/usr/bin/env bash
# The Python test suite (tests/python) against the extension built with ASan + UBSan.
#
#   bash scripts/pytest_asan.sh [pytest args...]
#
# Builds gilfree._core in build/pytest-asan (-Db_sanitize=address,undefined), copies the package
# with that .so into build/pytest-asan/pkg, and runs pytest with the *base* interpreter of the
# virtual environment (so that no editable-install hook or installed gilfree shadows the copy),
# the venv's site-packages on PYTHONPATH, and libasan (+ libstdc++, for C++ extensions such as
# matplotlib's that throw) preloaded. Every sanitizer report goes to a log file as well as to
# stderr, so that a report from a child process whose output a test swallows still fails the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GILFREE_VENV:-$ROOT/.venv}"
[ -x "$VENV/bin/python" ] || VENV="${VIRTUAL_ENV:-/work/venv}"
VPY="$VENV/bin/python"
MESON="$VENV/bin/meson"
command -v "$MESON" >/dev/null 2>&1 || MESON=meson
bdir="$ROOT/build/pytest-asan"

if [ ! -f "$bdir/build.ninja" ]; then
  PATH="$VENV/bin:$PATH" "$MESON" setup "$bdir" -Dtests=false -Dbuildtype=debug \
      -Db_sanitize=address,undefined -Db_lundef=false -Dpython.install_env=auto >/dev/null
fi
PATH="$VENV/bin:$PATH" ninja -C "$bdir" >/dev/null

pkg="$bdir/pkg"
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r "$ROOT/src/gilfree" "$pkg/gilfree"
rm -rf "$pkg/gilfree/__pycache__"
cp "$bdir"/_core.*.so "$pkg/gilfree/"
cp "$ROOT/examples/seed004_countdown_nogil.pyx" "$pkg/gilfree/demo/"  # as meson installs it

base_py="$("$VPY" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')"
site="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
logs="$bdir/logs"
rm -rf "$logs" && mkdir -p "$logs"

preload="$(gcc -print-file-name=libasan.so)"
stdcxx="$(gcc -print-file-name=libstdc++.so)"
[ -f "$stdcxx" ] && preload="$preload $stdcxx"

# handle_segv/abort=0: some tests crash workers on purpose (SIGSEGV via ctypes, abort); Python's
# faulthandler reports those, and they are not sanitizer findings.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:handle_segv=0:handle_abort=0:allow_user_segv_handler=1:log_path=$logs/asan:log_exe_name=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
# Check that the copy is what gets imported.
LD_PRELOAD="$preload" PYTHONPATH="$pkg:$site" "$base_py" -c \
  "import gilfree._core as c, sys; assert c.__file__.startswith('$pkg'), c.__file__"

cd "$ROOT/tests"
rc=0
LD_PRELOAD="$preload" PYTHONPATH="$pkg:$site" GILFREE_ASAN=1 \
  "$base_py" -m pytest -p no:cacheprovider -q --timeout=300 python "$@" || rc=$?
# Reports only: allocator_may_return_null=1 also logs a warning for every allocation too big
# to satisfy (a fuzzed pickle length), which Python turns into MemoryError as it should.
reports="$(grep -l -E 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$logs"/* 2>/dev/null || true)"
if [ -n "$reports" ]; then
  echo "== sanitizer reports:" >&2
  for f in $reports; do echo "--- $f" >&2; cat "$f" >&2; done
  [ "$rc" = 0 ] && rc=1
fi
exit "$rc"
