#!/usr/bin/env python3
"""Markdown tables of a scripts/bench_campaign.sh directory (docs/BENCHMARKS.md).

    scripts/bench_table.py OUT_DIR NAME...     (NAME: a model's file name; the first is the baseline)

Per campaign and model: the pooled prefill and decode speed (median +- standard deviation of
the rounds), decode relative to the baseline, and decode as a fraction of the roofline
bandwidth / (bytes the linear kernels read per token), where bandwidth is the probe taken just
before the round (the median of bench_memory_bandwidth's three 2-thread readings): the median
over the rounds of each round's fraction, and its range.
Then each model against the baseline round by round (the rounds interleave the models, so a
round's ratio is free of the drift between rounds): the median of the per-round ratios, their
range, and in how many rounds the model was the slower one.
Then whether campaigns agree: two independent figures, each printed as median +- sd, agree when
their difference is within the combined spread sqrt(sd_1^2 + sd_2^2); the stricter count (within
the larger sd alone) is printed too.
"""
import math
import glob
import json
import os
import re
import statistics
import sys


def probe(out, camp, rnd):
    path = os.path.join(out, f"c{camp}.r{rnd}.bw")
    if not os.path.exists(path):
        return None
    values = [float(v) for v in re.findall(r"GB/s=([0-9.]+)", open(path).read())]
    return statistics.median(values) if values else None


def probe_bandwidth(out, camp):
    rounds = [int(m.group(1)) for f in os.listdir(out) for m in [re.match(rf"c{camp}\.r(\d+)\.bw$", f)] if m]
    return [b for b in (probe(out, camp, r) for r in rounds) if b]


def roofline_fractions(out, name, camp, weight_bytes):
    fractions = []
    for path in glob.glob(os.path.join(out, f"{name}.c{camp}.r*.json")):
        rnd = int(re.match(r".*\.r(\d+)\.json$", path).group(1))
        bw = probe(out, camp, rnd)
        if bw:
            tg = json.load(open(path))["cases"][0]["decode_tokens_per_second"]["median"]
            fractions.append(tg * weight_bytes / (bw * 1e9))
    return fractions


def round_values(out, name, camp, metric):
    values = {}
    for path in glob.glob(os.path.join(out, f"{name}.c{camp}.r*.json")):
        rnd = int(re.match(r".*\.r(\d+)\.json$", path).group(1))
        values[rnd] = json.load(open(path))["cases"][0][metric]["median"]
    return values


def paired_cell(out, name, base, camp, metric):
    mine, theirs = round_values(out, name, camp, metric), round_values(out, base, camp, metric)
    ratios = [mine[r] / theirs[r] for r in sorted(mine) if r in theirs]
    if not ratios:
        return "n/a"
    slower = sum(r < 1 for r in ratios)
    return (f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}; "
            f"slower in {slower} of {len(ratios)})")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, names = sys.argv[1], sys.argv[2:]
    camps = sorted({int(m.group(1)) for f in os.listdir(out) for m in [re.match(r".*\.c(\d+)\.json$", f)] if m})
    results = {}
    for c in camps:
        for n in names:
            path = os.path.join(out, f"{n}.c{c}.json")
            if os.path.exists(path):
                results[(n, c)] = json.load(open(path))
    print("| model | campaign | kernels | linear GB read/token | pp t/s (median ± sd) | tg t/s (median ± sd) | decode vs "
          + names[0] + " | of roofline | ITL p50/p90/p99 ms | peak RSS | RSS / (linear bytes + KV) | CPU util |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        for c in camps:
            j = results.get((n, c))
            if not j:
                continue
            k = j["cases"][0]
            pp, tg, itl = k["prefill_tokens_per_second"], k["decode_tokens_per_second"], k["itl_seconds"]
            base = results.get((names[0], c))
            rel = tg["median"] / base["cases"][0]["decode_tokens_per_second"]["median"] if base else float("nan")
            wb = j["executed_linear_bytes"]
            fr = roofline_fractions(out, n, c, wb)
            roof = (f"{100 * statistics.median(fr):.0f} % ({100 * min(fr):.0f}-{100 * max(fr):.0f})" if fr else "n/a")
            rss = j["peak_rss_bytes"]
            print(f"| {n} | {c} | {j['kernel_summary']} | {wb / 1e9:.3f} | {pp['median']:.1f} ± {pp['stdev']:.1f} | "
                  f"{tg['median']:.2f} ± {tg['stdev']:.2f} | {rel:.2f}x | {roof} | "
                  f"{1e3 * itl['p50']:.0f} / {1e3 * itl['p90']:.0f} / {1e3 * itl['p99']:.0f} | {rss / 2**30:.2f} GiB | "
                  f"{rss / (wb + k['kv_cache_bytes']):.2f} | {100 * k['resources']['cpu_utilization']:.0f} % |")
    for c in camps:
        bw = probe_bandwidth(out, c)
        if bw:
            print(f"\nCampaign {c}: {len(bw)} bandwidth probes, median {statistics.median(bw):.1f} GB/s "
                  f"(range {min(bw):.1f}-{max(bw):.1f}).")
    print(f"\n| model | campaign | pp / {names[0]}, per round: median (range; rounds slower) | "
          f"tg / {names[0]}, per round |")
    print("|---|---|---|---|")
    for n in names[1:]:
        for c in camps:
            if (n, c) in results:
                print(f"| {n} | {c} | {paired_cell(out, n, names[0], c, 'prefill_tokens_per_second')} | "
                      f"{paired_cell(out, n, names[0], c, 'decode_tokens_per_second')} |")
    if len(camps) < 2:
        return
    print("\n| model | pp t/s " + " / ".join(f"campaign {c}" for c in camps) + " | tg t/s " +
          " / ".join(f"campaign {c}" for c in camps) + " |")
    print("|---|---|---|")
    agree = strict = total = 0
    for n in names:
        if not all((n, c) in results for c in camps):
            continue
        cells = []
        for metric in ("prefill_tokens_per_second", "decode_tokens_per_second"):
            s = [results[(n, c)]["cases"][0][metric] for c in camps]
            combined = math.sqrt(sum(x["stdev"] ** 2 for x in s))
            gap = max(x["median"] for x in s) - min(x["median"] for x in s)
            ok = gap <= combined
            agree += ok
            strict += gap <= max(x["stdev"] for x in s)
            total += 1
            verdict = (f"agree, {gap / combined:.2f} of the combined sd" if ok
                       else f"differ {100 * gap / min(x['median'] for x in s):.1f} %, {gap / combined:.2f} of the combined sd")
            cells.append(" / ".join(f"{x['median']:.1f} ± {x['stdev']:.1f}" for x in s) + f" ({verdict})")
        print(f"| {n} | {cells[0]} | {cells[1]} |")
    print(f"\n{agree} of {total} model/metric pairs agree within the combined spread sqrt(sd_1^2 + sd_2^2); "
          f"{strict} of {total} within the larger printed standard deviation alone.")


if __name__ == "__main__":
    main()
