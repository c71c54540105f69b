#!/usr/bin/env bash
# Build the core with ASan + UBSan (GOGIN_SANITIZE=1) in a scratch copy of the tree and run the
# test suite against it with leak detection on.  The working tree's own build is untouched.
#   scripts/sanitize.sh [pytest args...]      (default: tests/core)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/gogin-sanitize.XXXXXX)
trap 'rm -rf "$work"' EXIT
# tracked and untracked-but-not-ignored files: exactly the sources, no build outputs
(cd "$top" && git ls-files -co --exclude-standard -z) | (cd "$top" && xargs -0 cp --parents -t "$work")
cd "$work"
py=$(python3 -c 'import sys; print(sys.executable)')   # the real interpreter, not a shim
GOGIN_SANITIZE=1 "$py" setup.py -q build_ext --inplace >build.log 2>&1 || { tail -50 build.log; exit 1; }
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$top/scripts/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONMALLOC=malloc      # every Python allocation visible to ASan
export PYTHONPATH="$work"
[ $# -gt 0 ] || set -- tests/core
# RSS bounds are release-build facts: ASan's shadow memory and quarantine inflate RSS.
# The benchmark's peers (nginx, node, ...) are other people's programs: their leaks are theirs.
"$py" -m pytest -q -p no:cacheprovider -m "not rss" \
  --deselect tests/server/test_srv_memory.py::test_one_gib_through_storage_keeps_rss_bounded \
  --ignore tests/bench/test_peers.py \
  "$@" 2>&1 | tee sanitize.log
status=${PIPESTATUS[0]}
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' sanitize.log; then
  echo "sanitizer report found (see above)"; exit 1
fi
exit "$status"
