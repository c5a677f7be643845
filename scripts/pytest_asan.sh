#!/usr/bin/env bash
# The Python test suite (tests/python) against the extension built with ASan + UBSan.
#
#   bash scripts/pytest_asan.sh [pytest args...]
#
# Builds gilfree._core in build/pytest-asan (-Db_sanitize=address,undefined) and runs pytest on
# a copy of the package with that .so (scripts/_sanitized.sh), with libasan (+ libstdc++, for
# C++ extensions such as matplotlib's that throw) preloaded.
source "$(dirname "${BASH_SOURCE[0]}")/_sanitized.sh"
san_build asan address,undefined

preload="$(gcc -print-file-name=libasan.so)"
stdcxx="$(gcc -print-file-name=libstdc++.so)"
[ -f "$stdcxx" ] && preload="$preload $stdcxx"

# handle_segv/abort=0: some tests crash workers on purpose (SIGSEGV via ctypes, abort); Python's
# faulthandler reports those, and they are not sanitizer findings.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:handle_segv=0:handle_abort=0:allow_user_segv_handler=1:log_path=$logs/asan:log_exe_name=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
# Reports only: allocator_may_return_null=1 also logs a warning for every allocation too big
# to satisfy (a fuzzed pickle length), which Python turns into MemoryError as it should.

san_pytest "$preload" GILFREE_ASAN \
  'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' python "$@"
