#!/usr/bin/env bash
# Reproduces the "every format" table of docs/BENCHMARKS.md: `qeval bench` of several models,
# interleaved, repeated, and pooled with `qeval bench --combine`.
#
#   scripts/bench_campaign.sh OUT_DIR MODEL...
#   env: QEVAL (default build/release/src/qeval), BANDWIDTH (default
#        build/release/bench/bench_memory_bandwidth; empty: no probes), CAMPAIGNS (default 2),
#        ROUNDS (default 8), PROMPT (128), GEN (64), THREADS (2)
#
# Each campaign runs ROUNDS rounds; a round runs every MODEL once (`--reps 1 --warmup 1`), after a
# 2-thread read-bandwidth probe (OUT_DIR/cC.rR.bw, for the roofline); round R starts at the R-th
# model and wraps around, so that no model always runs first after the probe or after the same
# neighbour (campaign 1 of 2026-11-23 03:56, fixed order, had F32 prefill first in every round and
# 5-10 % ahead of every float-activation format; campaign 2, 0-3 %). The rounds of one model are
# then pooled: OUT_DIR/NAME.cC.json and NAME.cC.txt (table). Interleaving gives every model the
# same machine conditions, and pooling rounds minutes apart puts the machine's drift into the
# printed spread; repeated campaigns (C = 1, 2, ...) then check that the figures reproduce.
# A run that fails is logged in OUT_DIR/log.txt and the campaign goes on. Run on a quiet machine.
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 OUT_DIR MODEL..." >&2; exit 2; }
out=$1
shift
qeval=${QEVAL:-build/release/src/qeval}
bandwidth=${BANDWIDTH-build/release/bench/bench_memory_bandwidth}
mkdir -p "$out"
log="$out/log.txt"
for camp in $(seq 1 "${CAMPAIGNS:-2}"); do
  for round in $(seq 1 "${ROUNDS:-8}"); do
    bw=""
    if [[ -n "$bandwidth" ]]; then
      bw=$("$bandwidth" --benchmark_filter='BM_ReadBandwidth/2/' --benchmark_min_time=1 2>/dev/null | grep -o 'GB/s=[0-9.]*' | tr '\n' ' ' || true)
      echo "$bw" > "$out/c$camp.r$round.bw"
    fi
    echo "campaign $camp round $round $(date -u +%FT%TZ) load $(cut -d' ' -f1 /proc/loadavg) bandwidth $bw" | tee -a "$log"
    models=("$@")
    for i in $(seq 0 $(($# - 1))); do
      m=${models[$(((i + round - 1) % $#))]}
      name=$(basename "$m")
      if ! "$qeval" bench "$m" --prompt "${PROMPT:-128}" --gen "${GEN:-64}" --batch 1 --reps 1 --warmup 1 \
          --threads "${THREADS:-2}" --json "$out/$name.c$camp.r$round.json" > /dev/null 2>> "$out/stderr.txt"; then
        echo "FAILED: $name campaign $camp round $round (see $out/stderr.txt)" | tee -a "$log"
      fi
    done
  done
  for m in "$@"; do
    name=$(basename "$m")
    shopt -s nullglob
    runs=("$out/$name.c$camp.r"*.json)
    shopt -u nullglob
    if [[ ${#runs[@]} -ge 2 ]]; then
      "$qeval" bench --combine "${runs[@]}" --json "$out/$name.c$camp.json" > "$out/$name.c$camp.txt"
    else
      echo "SKIPPED: $name campaign $camp has ${#runs[@]} runs" | tee -a "$log"
    fi
  done
done
echo "done $(date -u +%FT%TZ)" | tee -a "$log"
