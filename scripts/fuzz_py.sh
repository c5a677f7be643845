#!/usr/bin/env bash
# atheris (requirements/fuzz.txt) on the decode paths a receiving process runs on bytes from
# another process: tests/fuzz/fuzz_frames.py (transport frames on a Queue / Pipe end: header,
# body, out-of-band buffer table, pickled and error payloads) and tests/fuzz/fuzz_packed.py
# (the pool's packed result chunks), each for GILFREE_FUZZ_PY_SECONDS (default 20) seconds.
#
#   bash scripts/fuzz_py.sh
#
# Coverage-guided on the C code too: gilfree._core is built with clang-14, ASan and
# -fsanitize-coverage (build/pytest-fuzz-py, scripts/_sanitized.sh), and libFuzzer (clang's
# libclang_rt.fuzzer_no_main, made into a shared library) is preloaded with clang's ASan runtime,
# so atheris runs on the preloaded libFuzzer and sees the extension's counters. A crash, an
# ASan report or a failed assertion in a harness fails the run; the input is kept as
# build/pytest-fuzz-py/<target>-crash-*. Corpora persist in build/pytest-fuzz-py/corpus-<target>.
source "$(dirname "${BASH_SOURCE[0]}")/_sanitized.sh"
"$VPY" -m pip install -q -r "$ROOT/requirements/fuzz.txt"
rtdir="$(ls -d /usr/lib/llvm-14/lib/clang/*/lib/linux | head -1)"
CC=clang-14 san_build fuzz-py address \
  "-Dc_args=-fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp"
fuzzer_so="$bdir/libfuzzer_nomain.so"
if [ ! -f "$fuzzer_so" ]; then
  clang-14 -shared -fPIC -o "$fuzzer_so" -Wl,--whole-archive \
    "$rtdir/libclang_rt.fuzzer_no_main-x86_64.a" -Wl,--no-whole-archive -lstdc++ -lpthread -lm
fi
# libFuzzer first: its coverage callbacks must win over the ASan runtime's stubs
preload="$fuzzer_so $rtdir/libclang_rt.asan-x86_64.so"
secs="${GILFREE_FUZZ_PY_SECONDS:-20}"
export ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=0:allocator_may_return_null=1:handle_segv=1:log_path=$logs/asan"
rc=0
for t in frames packed; do
  corpus="$bdir/corpus-$t"
  mkdir -p "$corpus"
  log="$bdir/fuzz-$t.log"
  r=0
  env LD_PRELOAD="$preload" PYTHONPATH="$pkg:$site" "$base_py" "$ROOT/tests/fuzz/fuzz_$t.py" \
    "$corpus" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 \
    -artifact_prefix="$bdir/$t-" >"$log" 2>&1 || r=$?
  grep -E "Loaded 1 modules|^#[0-9]+\s+(INITED|DONE)|ERROR|Done [0-9]+ runs" "$log" || true
  if ! grep -q "Loaded 1 modules" "$log"; then
    echo "fuzz_$t: the extension's coverage counters were not loaded (see $log)"; r=1
  fi
  if [ "$r" != 0 ]; then echo "fuzz_$t: failure (rc=$r), see $log"; tail -40 "$log"; rc=1; fi
done
reports="$(grep -l -E 'ERROR: AddressSanitizer' "$logs"/* 2>/dev/null || true)"
if [ -n "$reports" ]; then
  for f in $reports; do echo "--- $f" >&2; cat "$f" >&2; done
  rc=1
fi
exit "$rc"
