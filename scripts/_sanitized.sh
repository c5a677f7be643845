# Shared by scripts/pytest_asan.sh and scripts/pytest_tsan.sh: build gilfree._core with a
# sanitizer, copy the package with that .so, and run pytest on it. Sourced, not run.
#
#   san_build NAME SANITIZE [MESON ARGS...]
#                                meson -Db_sanitize=SANITIZE in build/pytest-NAME (CC from
#                                the environment); sets bdir, pkg (the package copy),
#                                base_py, site, logs
#   san_pytest PRELOAD FLAG REGEX [pytest args...]
#                                pytest (from tests/) with PRELOAD in LD_PRELOAD and FLAG=1 in
#                                the environment; a log in $logs matching REGEX fails the run
#
# pytest runs with the *base* interpreter of the virtual environment (so that no
# editable-install hook or installed gilfree shadows the copy) and the venv's site-packages on
# PYTHONPATH. The sanitizer options (set by the caller) must send every report to
# $logs as well as stderr, so that a report from a child process whose output a test
# swallows still fails the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GILFREE_VENV:-$ROOT/.venv}"
[ -x "$VENV/bin/python" ] || VENV="${VIRTUAL_ENV:-/work/venv}"
VPY="$VENV/bin/python"
MESON="$VENV/bin/meson"
command -v "$MESON" >/dev/null 2>&1 || MESON=meson

san_build() {
  local name="$1" sanitize="$2"
  shift 2
  bdir="$ROOT/build/pytest-$name"
  if [ ! -f "$bdir/build.ninja" ]; then
    PATH="$VENV/bin:$PATH" "$MESON" setup "$bdir" -Dtests=false -Dbuildtype=debug \
        -Db_sanitize="$sanitize" -Db_lundef=false -Dpython.install_env=auto "$@" >/dev/null
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
}

san_pytest() {
  local preload="$1" flag="$2" regex="$3"
  shift 3
  # Check that the copy is what gets imported.
  LD_PRELOAD="$preload" PYTHONPATH="$pkg:$site" "$base_py" -c \
    "import gilfree._core as c, sys; assert c.__file__.startswith('$pkg'), c.__file__"
  cd "$ROOT/tests"
  local rc=0
  env LD_PRELOAD="$preload" PYTHONPATH="$pkg:$site" "$flag=1" \
    "$base_py" -m pytest -p no:cacheprovider -q --timeout=300 "$@" || rc=$?
  local reports
  reports="$(grep -l -E "$regex" "$logs"/* 2>/dev/null || true)"
  if [ -n "$reports" ]; then
    echo "== sanitizer reports:" >&2
    for f in $reports; do echo "--- $f" >&2; cat "$f" >&2; done
    [ "$rc" = 0 ] && rc=1
  fi
  return "$rc"
}
