#!/usr/bin/env bash
# Reproduce benchmarks/RESULTS.md: release build (-O2, no bounds checks), the side-by-side
# gogin-bench run (gogin and every peer that is installed, four scenarios, server pinned to
# cpu 0 and the load client to cpu 1), the socketpair fanout script at 1k and 10k
# subscribers, then the pytest-benchmark micro-benchmarks.
#
#   scripts/bench.sh                 # everything; results in build/bench/
#   PARTS=side scripts/bench.sh      # only the side-by-side run (PARTS: side micro, any subset)
#   TARGETS=gogin,nchan SCENARIOS="fanout routing" PARTS=side scripts/bench.sh
#   OUT=/tmp/b ROUNDS=50 scripts/bench.sh
#
# Peers: `pip install websockets picows`, `apt-get install nginx libnginx-mod-nchan nodejs`,
# `(cd benchmarks/peers && npm ci)`; a peer that is missing is skipped with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-build/bench}
PARTS=${PARTS:-side micro}
SCENARIOS=${SCENARIOS:-fanout wide routing capacity}
DURATION=${DURATION:-3}
DRAIN=${DRAIN:-3}
ROUNDS=${ROUNDS:-50}
MESSAGES=${MESSAGES:-100}
SIZE=${SIZE:-100}
PY=${PYTHON:-python}
mkdir -p "$OUT"

# release flavour: setup.py re-cythonizes by itself when the previous build was debug/sanitize
unset GOGIN_DEBUG GOGIN_SANITIZE GOGIN_SELECTOR GOGIN_EXT GOGIN_ANNOTATE
"$PY" setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) CPUs)"
  echo "kernel: $(uname -r)"
  echo "python: $("$PY" -c 'import platform; print(platform.python_version())')"
  echo "cython: $("$PY" -c 'import Cython; print(Cython.__version__)')"
  echo "gcc: $(gcc -dumpfullversion 2>/dev/null || echo '?')"
  echo "build: $(cat build/.gogin-flavour) (-O2)"
  echo "nofile: $(ulimit -Sn)/$(ulimit -Hn)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- gogin 2>/dev/null || echo ' (gogin/ modified)')"
} | tee "$OUT/env.txt"

if [[ " $PARTS " == *" side "* ]]; then
  if [ -z "${TARGETS:-}" ]; then
    TARGETS=gogin
    for peer in websockets picows nchan node-ws; do
      if why=$("$PY" -c "import sys; from gogin.bench.peers import PEERS
ok, why = PEERS[sys.argv[1]].available(); print(why); sys.exit(0 if ok else 1)" "$peer"); then
        TARGETS="$TARGETS,$peer"
      else
        echo "skipping peer $peer: $why" | tee -a "$OUT/env.txt"
      fi
    done
  fi
  echo "targets: $TARGETS" | tee -a "$OUT/env.txt"
  for scen in $SCENARIOS; do
    echo "== gogin-bench --scenario $scen --target $TARGETS"
    rm -f "$OUT/$scen.jsonl"
    # a saturated step loses messages and makes gogin-bench exit 1: that is a result here
    "$PY" -m gogin.bench.cli --scenario "$scen" --target "$TARGETS" --server-cpu 0 \
        --client-cpu 1 --duration "$DURATION" --drain "$DRAIN" --stop-after 2 --progress off \
        --json "$OUT/$scen.jsonl" --markdown "$OUT/$scen.md" --plot "$OUT/$scen.png" \
        2>&1 | tee "$OUT/$scen.log" || true
  done
  if [[ " $SCENARIOS " == *" fanout "* ]]; then
    # EventSource subscribers: the targets that have them (gogin, Nchan)
    sse_targets=$(echo "$TARGETS" | tr ',' '\n' | grep -xE 'gogin|nchan' | paste -sd, -)
    echo "== gogin-bench --scenario fanout --subscribe sse --target $sse_targets"
    rm -f "$OUT/fanout-sse.jsonl"
    "$PY" -m gogin.bench.cli --scenario fanout --subscribe sse --target "$sse_targets" \
        --server-cpu 0 --client-cpu 1 --duration "$DURATION" --drain "$DRAIN" --stop-after 2 \
        --progress off --json "$OUT/fanout-sse.jsonl" 2>&1 | tee "$OUT/fanout-sse.log" || true
  fi
  "$PY" -m gogin.bench.report "$OUT"/*.jsonl --plots "$OUT" | tee "$OUT/summary.md"
fi
[[ " $PARTS " == *" micro "* ]] || { echo "results in $OUT/"; exit 0; }

for n in 1000 10000; do
  echo "== fanout_socketpairs --subscribers $n --messages $MESSAGES --size $SIZE --rounds $ROUNDS"
  "$PY" benchmarks/fanout_socketpairs.py --subscribers "$n" --messages "$MESSAGES" \
      --size "$SIZE" --rounds "$ROUNDS" | tee "$OUT/fanout_$n.txt"
  "$PY" benchmarks/fanout_socketpairs.py --subscribers "$n" --messages "$MESSAGES" \
      --size "$SIZE" --rounds "$ROUNDS" --json >"$OUT/fanout_$n.json"
done

echo "== pytest-benchmark"
"$PY" -m pytest benchmarks/ -q -p no:cacheprovider --benchmark-enable \
    --benchmark-json="$OUT/micro.json" \
    --benchmark-columns=min,median,mean,stddev,rounds | tee "$OUT/micro.txt"

# throughputs recorded in extra_info
"$PY" - "$OUT/micro.json" <<'PYEOF'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    extra = {k: (f"{v:,.0f}" if isinstance(v, float) else v)
             for k, v in b["extra_info"].items() if k != "note"}
    print(f"{b['name']:45s} median {b['stats']['median'] * 1e6:12.2f} us  {extra}")
PYEOF
echo "results in $OUT/"
