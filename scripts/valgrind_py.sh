#!/usr/bin/env bash
# The extension under valgrind (memcheck, definite leaks too) on a representative in-process
# workload (tests/python/data/valgrind_workload.py, or the script given). Not part of CI (it
# needs a debugoptimized build and ~10 s); errors whose stack has no gilfree frame are the
# interpreter's own (pyenv builds are not valgrind-clean) and are listed but not counted.
#   bash scripts/valgrind_py.sh [script.py]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GILFREE_VENV:-$ROOT/.venv}"
[ -x "$VENV/bin/python" ] || VENV="${VIRTUAL_ENV:-/work/venv}"
VPY="$VENV/bin/python"
script="${1:-$ROOT/tests/python/data/valgrind_workload.py}"
bdir="$ROOT/build/valgrind-py"
if [ ! -f "$bdir/build.ninja" ]; then
  PATH="$VENV/bin:$PATH" "$VENV/bin/meson" setup "$bdir" -Dtests=false \
      -Dbuildtype=debugoptimized >/dev/null
fi
PATH="$VENV/bin:$PATH" ninja -C "$bdir" >/dev/null
pkg="$bdir/pkg"; rm -rf "$pkg"; mkdir -p "$pkg"
cp -r "$ROOT/src/gilfree" "$pkg/"; rm -rf "$pkg/gilfree/__pycache__"; cp "$bdir"/_core.*.so "$pkg/gilfree/"
base_py="$("$VPY" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')"
site="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
logs="$bdir/logs"; rm -rf "$logs"; mkdir -p "$logs"
# A 1 GiB arena: valgrind cannot reserve the default 64 GiB of address space.
GILFREE_ARENA_SIZE=$((1 << 30)) PYTHONMALLOC=malloc PYTHONPATH="$pkg:$site" \
  valgrind -q --suppressions="$ROOT/scripts/cpython.supp" --leak-check=full \
  --show-leak-kinds=definite --num-callers=40 --log-file="$logs/vg.%p.log" \
  "$base_py" "$script"
"$VPY" - "$logs" <<'PY'
import glob, re, sys
ours = other = 0
for f in glob.glob(sys.argv[1] + "/vg.*.log"):
    for e in re.split(r"\n==\d+== \n", open(f).read()):
        if not re.search(r"==\d+== [A-Z]", e):
            continue
        if re.search(r"\bgf_|_core\.cpython|/src/(ext|core)/", e):
            ours += 1
            print(e)
        else:
            other += 1
print("valgrind: %d error(s) in gilfree, %d in the interpreter (ignored)" % (ours, other))
sys.exit(1 if ours else 0)
PY
