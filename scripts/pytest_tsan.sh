#!/usr/bin/env bash
# The Python tests that drive the pool from threads, against the extension built with
# ThreadSanitizer.
#
#   bash scripts/pytest_tsan.sh [pytest args...]     (default: the files in TESTS below)
#
# Builds gilfree._core in build/pytest-tsan (-Db_sanitize=thread) and runs pytest on a copy of
# the package with that .so (scripts/_sanitized.sh), libtsan preloaded into the (uninstrumented)
# interpreter. TSan sees CPython's own synchronisation through the pthread calls it intercepts
# (the GIL is a pthread mutex + condition variable), so a race it reports is between accesses of
# our code made without the GIL and without a lock or atomic between them. Suppressions:
# scripts/tsan.supp (CPython only, each with its reason). Reports go to build/pytest-tsan/logs
# and fail the run. Forked children (pool workers) run under TSan too (die_after_fork=0: a child
# forked from a threaded parent goes on; report_signal_unsafe=0, handle_segv=0: the tests kill
# and segfault workers on purpose, and Python's faulthandler reports those).
source "$(dirname "${BASH_SOURCE[0]}")/_sanitized.sh"
san_build tsan thread

TESTS=(python/test_pool_threads.py python/test_pool.py python/test_executor.py
       python/test_pool_map.py)
[ $# -gt 0 ] || set -- "${TESTS[@]}"

export TSAN_OPTIONS="die_after_fork=0:report_signal_unsafe=0:handle_segv=0:halt_on_error=0:second_deadlock_stack=1:suppressions=$ROOT/scripts/tsan.supp:log_path=$logs/tsan"
tsan="$(gcc -print-file-name=libtsan.so)"

# Canary: a data race in a TSan-built library called from two Python threads (ctypes releases
# the GIL) must be reported in $logs -- else this set-up could not see a race in gilfree._core.
cat >"$bdir/canary.c" <<'C'
static volatile long counter;  /* volatile: a long loop, not one store */
void race(void) { for (long i = 0; i < 20000000; i++) counter++; }
C
gcc -O1 -g -fPIC -shared -fsanitize=thread -o "$bdir/canary.so" "$bdir/canary.c"
LD_PRELOAD="$tsan" TSAN_OPTIONS="log_path=$logs/canary" "$base_py" -c "
import ctypes, threading
lib = ctypes.CDLL('$bdir/canary.so')
ts = [threading.Thread(target=lib.race) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]" || true  # TSan exits 66 after a report
if ! grep -q "WARNING: ThreadSanitizer: data race" "$logs"/canary.* 2>/dev/null; then
  echo "pytest_tsan.sh: TSan did not report the canary's race: the run would prove nothing" >&2
  exit 1
fi
rm -f "$logs"/canary.*

san_pytest "$tsan" GILFREE_TSAN \
  'WARNING: ThreadSanitizer|ERROR: ThreadSanitizer|ThreadSanitizer: (CHECK|FATAL)' "$@"
