#!/usr/bin/env bash
# Instructions per iteration of the reference ledger's hot paths, counted with callgrind
# (repeatable under load): each loop runs with N and 2N iterations, (Ir(2N) - Ir(N)) / N.
#   bench/callgrind_refs.sh BUILD_DIR [PYTHON]
# BUILD_DIR: a meson build of this tree with tests on (bench/c/ledger_bench); PYTHON: an
# interpreter with gilfree installed (for bench/refs_loops.py; omitted: C loops only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bdir="$1"
py="${2:-}"
n=20000
ir() { # command... -> total instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per() { # label command-with-N-placeholder...
  local label="$1"; shift
  local a b
  a="$(ir "${@/@N@/$n}")" || true
  b="$(ir "${@/@N@/$((2 * n))}")" || true
  if [ -z "$a" ] || [ -z "$b" ]; then echo "$label: n/a"; return; fi
  python3 -c "print('%-14s %8.1f instructions per iteration' % ('$label', ($b - $a) / $n))"
}
for m in plain "held 0" "held 10" "held 100" "hold 0" "hold 100" dictset dictins; do
  set -- $m
  "$bdir/bench/c/ledger_bench" "$1" 1 ${2:-} >/dev/null 2>&1 || { echo "$m: n/a"; continue; }
  per "$m" "$bdir/bench/c/ledger_bench" "$1" @N@ ${2:-}
done
if [ -n "$py" ]; then
  export GILFREE_ARENA_SIZE=$((1 << 30))  # valgrind cannot map the default 64 GiB
  export PYTHONHASHSEED=0                 # the same dict layouts run to run
  py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"
  cd /tmp  # not the source tree: the installed package
  n=2000
  for m in queue_handle dict_pass dict_set; do
    per "py $m" "$py" "$here/refs_loops.py" "$m" @N@
  done
fi
