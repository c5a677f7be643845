# Shared set-up for scripts/demo.sh and scripts/test.sh: system packages, a virtual environment,
# pinned Python packages, and gilfree itself built from this tree. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GILFREE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

# System packages: a C compiler and the Python headers to build the extension; valgrind for
# the C tests. Installed only when missing (needs root or sudo).
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
"$PY" -c 'import sysconfig,os,sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")) else 1)' \
    || need_apt+=(python3-dev)
"$PY" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "${GILFREE_NEED_VALGRIND:-0}" = 1 ]; then command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind); fi
# redis-server for the seeds' Celery example (examples/celery/, tests/python/test_celery_example.py)
if [ "${GILFREE_NEED_REDIS:-0}" = 1 ]; then command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server); fi
if [ "${GILFREE_NEED_CLANG:-0}" = 1 ]; then
    command -v clang-14 >/dev/null 2>&1 || need_apt+=(clang-14)
    [ -n "$(ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ] \
        || need_apt+=(libclang-rt-14-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip==24.3.1 >/dev/null 2>&1 || true
"$VPY" -m pip install -q -r "$ROOT/requirements/build.txt"
