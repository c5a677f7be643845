#!/usr/bin/env bash
# Build and run the C tests in one configuration:
#   scripts/ctests.sh asan|tsan|valgrind|plain|libfuzzer
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="${1:-plain}"
bdir="$ROOT/build/ctest-$mode"
MESON="${MESON:-meson}"
command -v "$MESON" >/dev/null 2>&1 || MESON="$ROOT/.venv/bin/meson"
opts=(-Dpython=false -Dtests=true)
if [ "$mode" = libfuzzer ]; then
  # Coverage-guided fuzzing of what a process parses from its peers (clang's libFuzzer).
  CLANG="${CLANG:-$(command -v clang-14 || command -v clang || true)}"
  if [ -z "$CLANG" ]; then echo "libfuzzer: no clang, skipped (the standalone drivers ran)"; exit 0; fi
  mkdir -p "$bdir"
  src="$ROOT/src/core"
  core=("$src/errors.c" "$src/futex.c" "$src/arena.c" "$src/arena_proc.c" "$src/arena_alloc.c" "$src/arena_big.c" "$src/arena_reclaim.c" "$src/arena_ledger.c" "$src/arena_copy.c" "$src/arena_stats.c" "$src/arena_obj.c" "$src/lock.c" "$src/sync.c" "$src/frame.c" "$src/proc.c" "$src/sock.c")
  secs="${GILFREE_FUZZ_SECONDS:-30}"
  for t in fuzz_frame fuzz_ring fuzz_sock; do
    extra=("$src/ring.c" "$src/ring_put.c" "$src/ring_get.c")
    "$CLANG" -g -O1 -DGF_LIBFUZZER -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
      -I"$ROOT/include" -I"$src" "$ROOT/tests/c/$t.c" "${core[@]}" "${extra[@]}" -lpthread \
      -o "$bdir/$t"
    mkdir -p "$bdir/corpus-$t"
    rc=0
    "$bdir/$t" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$bdir/$t-" "$bdir/corpus-$t" \
      >"$bdir/$t.log" 2>&1 || rc=$?
    grep -E "^Done|ERROR|SUMMARY" "$bdir/$t.log" || true
    if [ "$rc" != 0 ]; then echo "$t: libFuzzer found a failure (rc=$rc), see $bdir/$t.log"; exit 1; fi
  done
  exit 0
fi
case "$mode" in
  asan) opts+=(-Db_sanitize=address,undefined -Dbuildtype=debug -Db_lundef=false) ;;
  tsan) opts+=(-Db_sanitize=thread -Dbuildtype=debug -Db_lundef=false) ;;
  valgrind|plain) opts+=(-Dbuildtype=debugoptimized) ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
if [ ! -f "$bdir/build.ninja" ]; then
  "$MESON" setup "$bdir" "${opts[@]}" >/dev/null
fi
ninja -C "$bdir" >/dev/null
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
case "$mode" in
  asan|plain)
    "$MESON" test -C "$bdir" --print-errorlogs --num-processes 2 ;;
  tsan)
    # Threaded tests only: TSan does not follow fork()ed children reliably.
    export GF_TEST_TSAN=1
    for t in test_lock test_sync test_ring test_ledger; do
      [ -x "$bdir/tests/c/$t" ] && "$bdir/tests/c/$t"
    done ;;
  valgrind)
    for t in test_arena test_alloc test_reclaim test_ledger test_ring test_frame; do
      [ -x "$bdir/tests/c/$t" ] || continue
      GF_TEST_VALGRIND=1 valgrind -q --error-exitcode=3 --trace-children=yes \
        --child-silent-after-fork=no "$bdir/tests/c/$t"
    done ;;
esac
