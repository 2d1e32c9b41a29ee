#!/usr/bin/env bash
# Reproduces the method table of docs/QUANTIZATION.md: KL divergence vs FP32 (mean ± stderr,
# top-1 agreement) and perplexity of every quantization spec below on both shared models.
#
#   scripts/quant_table.sh [OUT_DIR]        (default OUT_DIR: quant-table)
#   env: QEVAL (default build/release/src/qeval), QEVAL_SHARED (default ../shared),
#        CHUNKS (windows of 128 tokens, default 400), THREADS (default 2),
#        PPL_RUNS (1, default: also run `qeval perplexity` per spec and check it equals the PPL(Q)
#        that `qeval kld` reports; 0: take PPL(Q) from the kld run only, half the time)
# A spec whose kld JSON already exists in OUT_DIR is not run again (resume after interruption).
#
# Text: shared/data/tinystories/tinystories_eval.txt (1728 stories separated by blank lines),
# split by story: stories 0..863 are the CALIBRATION text, stories 864..1727 the EVALUATION
# text, so the two never overlap (qeval checks and would warn). Both models are evaluated on the
# same text, as shared/reference/perplexity.md does (aidreams260K was trained on other text, so
# its absolute perplexity is high; the quantized-vs-FP32 comparison is what matters).
# Calibration: qeval's defaults, 128 windows x 512 tokens (capped at 128 by aidreams260K's
# context), seed 0. Evaluation: llama-perplexity's convention (--ctx 128, second half of each
# window scored), CHUNKS windows; every spec's KLD run also reports PPL(Q), and the separate
# `qeval perplexity` run must agree with it (the script checks to 1e-6 relative).
#
# Output: OUT_DIR/<model>/<spec>.{kld,ppl,quant}.json and .log (quant: `qeval quantize --json` of
# the weight specs, for their effective bits per weight), OUT_DIR/commands.txt (every command
# run, in order), OUT_DIR/results.json and OUT_DIR/table.md.
set -euo pipefail

QEVAL=${QEVAL:-build/release/src/qeval}
SHARED=${QEVAL_SHARED:-../shared}
OUT=${1:-quant-table}
CHUNKS=${CHUNKS:-400}
THREADS=${THREADS:-2}
PPL_RUNS=${PPL_RUNS:-1}
TEXT="$SHARED/data/tinystories/tinystories_eval.txt"

[ -x "$QEVAL" ] || { echo "quant_table.sh: $QEVAL is not an executable (set QEVAL)" >&2; exit 2; }
[ -f "$TEXT" ] || { echo "quant_table.sh: $TEXT not found (set QEVAL_SHARED)" >&2; exit 2; }
mkdir -p "$OUT"
CALIB="$OUT/calib.txt"
EVAL="$OUT/eval.txt"
python3 - "$TEXT" "$CALIB" "$EVAL" <<'PY'
import sys
stories = open(sys.argv[1], encoding="utf-8").read().rstrip("\n").split("\n\n")
assert len(stories) == 1728, len(stories)
half = len(stories) // 2
open(sys.argv[2], "w", encoding="utf-8").write("\n\n".join(stories[:half]) + "\n")
open(sys.argv[3], "w", encoding="utf-8").write("\n\n".join(stories[half:]) + "\n")
PY

# Weight-only methods at W8 / W4 / W3 (groups of 32 along the input: the models' rows are 64 and
# 172 wide), weight+activation, and KV-cache specs.
SPECS=(
  fp32
  w8g32 w8g32-gptq w8g32-awq llmint8 spqr-w8
  w4g32 w4g32-gptq w4g32-awq w4g32-awq-gptq spqr-w4
  w3g32 w3g32-gptq w3g32-awq w3g32-awq-gptq spqr-w3
  w8a8 w8a8-smoothquant w4g32a8
  kv4 kv3 kv4-sym kv3-sym
)
MODELS=(stories260K aidreams260K)

touch "$OUT/commands.txt"
run() {  # run LOG_PREFIX CMD...: stdout to PREFIX.json, stderr to PREFIX.log
  local prefix=$1
  shift
  echo "$*" >> "$OUT/commands.txt"
  "$@" > "$prefix.json" 2> "$prefix.log" || { echo "FAILED: $*" >&2; cat "$prefix.log" >&2; exit 1; }
}

for model in "${MODELS[@]}"; do
  M="$SHARED/models/$model-gguf/$model-F32.gguf"
  mkdir -p "$OUT/$model"
  for spec in "${SPECS[@]}"; do
    q=()
    [ "$spec" != fp32 ] && q=(--spec "$spec" --calib "$CALIB")
    echo "[$model] $spec" >&2
    [ -s "$OUT/$model/$spec.kld.json" ] || \
      run "$OUT/$model/$spec.kld" "$QEVAL" kld "$M" "$M" -f "$EVAL" --ctx 128 --chunks "$CHUNKS" --json -t "$THREADS" "${q[@]}"
    # Effective bits per weight of the weight specs, as `qeval quantize` reports them (the
    # simulated model it writes is not used further).
    if [[ "$spec" != fp32 && "$spec" != kv* && ! -s "$OUT/$model/$spec.quant.json" ]]; then
      run "$OUT/$model/$spec.quant" "$QEVAL" quantize "$M" "${q[@]}" -o "$OUT/$model/$spec.sim.gguf" --simulate --json -t "$THREADS"
      rm -f "$OUT/$model/$spec.sim.gguf"
    fi
    if [ "$PPL_RUNS" = 1 ] && [ ! -s "$OUT/$model/$spec.ppl.json" ]; then
      run "$OUT/$model/$spec.ppl" "$QEVAL" perplexity "$M" -f "$EVAL" --ctx 128 --chunks "$CHUNKS" --json -t "$THREADS" "${q[@]}"
    fi
    if grep -q "overlaps the evaluation text" "$OUT/$model/$spec.kld.log"; then
      echo "quant_table.sh: calibration overlaps evaluation text for $spec" >&2
      exit 1
    fi
  done
done

python3 - "$OUT" "${MODELS[*]}" "${SPECS[*]}" <<'PY'
import json, math, os, re, sys
out, models, specs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
results = []
for m in models:
    for s in specs:
        if not os.path.exists(f"{out}/{m}/{s}.kld.json"):
            continue  # not run (yet)
        k = json.load(open(f"{out}/{m}/{s}.kld.json"))
        qj = f"{out}/{m}/{s}.quant.json"
        bits = json.load(open(qj))["scheme_bits_per_weight"] if os.path.exists(qj) else None
        p = {"ppl": k["mean_ppl_q"], "ppl_err": k["mean_ppl_q_err"], "from": "kld"}
        if os.path.exists(f"{out}/{m}/{s}.ppl.json"):
            p = json.load(open(f"{out}/{m}/{s}.ppl.json"))
            p["from"] = "perplexity"
            if abs(p["ppl"] - k["mean_ppl_q"]) > 1e-6 * p["ppl"]:
                sys.exit(f"{m} {s}: perplexity {p['ppl']} and kld PPL(Q) {k['mean_ppl_q']} disagree")
        results.append({"model": m, "spec": s, "bits_per_weight": bits, "ppl": p["ppl"], "ppl_err": p.get("ppl_err"),
                        "ppl_from": p["from"],
                        "ppl_base": k["mean_ppl_base"], "kld": k["mean_kld"], "kld_err": k["mean_kld_err"],
                        "same_top_pct": k["same_top_p_pct"], "same_top_pct_err": k["same_top_p_pct_err"],
                        "n_chunks": k["n_chunks"], "scored_tokens": k["scored_tokens"]})
json.dump(results, open(f"{out}/results.json", "w"), indent=1)
by = {(r["model"], r["spec"]): r for r in results}
lines = ["| spec | " + " | ".join(f"{m} bpw | {m} PPL (Δ%) | {m} KLD ± err | {m} top-1 %" for m in models) + " |",
         "|---|" + "---|---|---|---|" * len(models)]
for s in specs:
    if not all((m, s) in by for m in models):
        continue
    cells = []
    for m in models:
        r = by[(m, s)]
        d = 100 * (r["ppl"] / r["ppl_base"] - 1)
        bits = "32" if s == "fp32" else ("—" if r["bits_per_weight"] in (None, 0.0) else f"{r['bits_per_weight']:.3f}")
        cells += [bits, f"{r['ppl']:.4f} ({d:+.2f})", f"{r['kld']:.5f} ± {r['kld_err']:.5f}",
                  f"{r['same_top_pct']:.2f}"]
    lines.append(f"| `{s}` | " + " | ".join(cells) + " |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
