#!/usr/bin/env bash
# The long fuzz run of tests/fuzz's four targets (CI runs each for 20 s: tests/fuzz/test_fuzz.py).
#   scripts/fuzz.sh [-t SECONDS] [--sanitize] [TARGET...]
#     TARGET      http, frames, template, config (default: all four, one after the other)
#     -t SECONDS  of fuzzing per target (default 600; FUZZ_SECONDS=N in the environment too)
#     --sanitize  then replay everything the run produced or reached (its new corpus entries,
#                 the committed corpus and crash files) through an ASan + UBSan build of the
#                 core (GOGIN_SANITIZE=1), made in a scratch copy of the tree as
#                 scripts/sanitize.sh does; the tree's own build is untouched
# Why fuzz first and sanitize after: atheris' wheel links its own libFuzzer, and a preloaded
# libasan takes over its coverage hooks - fuzzing under ASan runs blind (atheris warns so).
# Needs atheris (the test extra installs it).  Every input that fails an invariant or crashes is
# copied to tests/fuzz/crashes/<target>/: commit it with its fix, so test_fuzz.py replays it for
# good.  New corpus entries stay in a scratch folder (printed at the end): copy the few worth
# keeping to tests/fuzz/corpus/<target>/ - the committed corpus is small and hand-made.
# Exit status: 1 if any target failed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-600}
sanitize=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t) seconds=$2; shift 2 ;;
    --sanitize) sanitize=1; shift ;;
    http|frames|template|config) targets+=("$1"); shift ;;
    *) echo "usage: $0 [-t SECONDS] [--sanitize] [http|frames|template|config...]" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(http frames template config)
py=$(python3 -c 'import sys; print(sys.executable)')
"$py" -c 'import atheris' 2>/dev/null || { echo "atheris is not installed: pip install -e '.[test]'" >&2; exit 2; }

work=$(mktemp -d /tmp/gogin-fuzz.XXXXXX)
san_env=()
if [ "$sanitize" = 1 ]; then
  # the build requirements of pyproject.toml (pip's isolated build had them, the env may not)
  "$py" -c 'import Cython' 2>/dev/null || "$py" -m pip install -q 'setuptools>=68' 'Cython>=3.0.10'
  # tracked and untracked-but-not-ignored files: exactly the sources, no build outputs
  mkdir "$work/tree"
  (cd "$top" && git ls-files -co --exclude-standard -z) | (cd "$top" && xargs -0 cp --parents -t "$work/tree")
  (cd "$work/tree" && GOGIN_SANITIZE=1 "$py" setup.py -q build_ext --inplace >build.log 2>&1) \
    || { tail -50 "$work/tree/build.log"; exit 1; }
  # for the interpreter only (not nice, timeout, grep...)
  san_env=(
    LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
    # leaks are scripts/sanitize.sh's business: the interpreter's own at exit drown a run
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0"
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1"
    PYTHONMALLOC=malloc       # every Python allocation visible to ASan
    PYTHONPATH="$work/tree"   # the sanitized gogin before the installed one
  )
fi

# run NAME LOG ARGS...: one libFuzzer process in the target's scratch folder
run() {
  local t=$1 log=$2
  shift 2
  (cd "$work/$t" && nice -n 19 timeout $((seconds + 300)) "$@" -artifact_prefix=artifacts/ \
      -timeout=10 -rss_limit_mb=4096 -print_final_stats=1) >"$log" 2>&1
}

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/new" "$work/$t/artifacts"
  echo "== $t: $seconds s (log: $work/$t/log)"
  status=0
  shown=$work/$t/log             # the log whose end is printed if the target fails
  # libFuzzer writes new corpus entries to the first folder: the scratch one
  run "$t" "$work/$t/log" "$py" "$top/tests/fuzz/fuzz_$t.py" new "$top/tests/fuzz/corpus/$t" \
      -max_total_time="$seconds" || status=$?
  grep -E '^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units' "$work/$t/log" || true
  if [ "$sanitize" = 1 ] && [ "$status" = 0 ]; then
    echo "   replaying its inputs under ASan + UBSan (log: $work/$t/asan.log)"
    dirs=(new "$top/tests/fuzz/corpus/$t")
    [ -d "$top/tests/fuzz/crashes/$t" ] && dirs+=("$top/tests/fuzz/crashes/$t")
    # -runs=0: execute every input of the folders once, mutate nothing
    shown=$work/$t/asan.log
    run "$t" "$shown" env "${san_env[@]}" "$py" "$work/tree/tests/fuzz/fuzz_$t.py" \
        "${dirs[@]}" -runs=0 || status=$?
    grep -E '^#[0-9]+[[:space:]]+INITED' "$shown" || true
    if grep -qE 'ERROR: AddressSanitizer|runtime error:' "$shown"; then
      [ "$status" != 0 ] || status=1
    fi
  fi
  if [ "$status" != 0 ] || [ -n "$(ls -A "$work/$t/artifacts")" ]; then
    failed+=("$t")
    mkdir -p "$top/tests/fuzz/crashes/$t"
    for f in "$work/$t/artifacts"/*; do
      [ -e "$f" ] || continue
      cp "$f" "$top/tests/fuzz/crashes/$t/"
      echo "   kept tests/fuzz/crashes/$t/$(basename "$f")"
    done
    echo "   $t FAILED (exit $status); the end of its log:"
    grep -v 'Uses: [0-9]*$' "$shown" | tail -40 | sed 's/^/   | /'
  fi
  echo "   new corpus entries: $(ls "$work/$t/new" | wc -l) in $work/$t/new"
done
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
echo "all targets clean"
