#!/usr/bin/env bash
# The main job: build gilfree (if needed) and run the seed workloads demo.
#   scripts/demo.sh [--quick] [demo options...]
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
"$VPY" -m pip install -q -r "$ROOT/requirements/demo.txt"
"$VPY" -m pip install -q --no-build-isolation "$ROOT"
cd "$ROOT"
exec "$VPY" -m gilfree demo "$@"
