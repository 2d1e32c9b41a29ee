#pragma once
// Pooling the repetitions of several runs of one in-process benchmark.
//
// On a shared or virtualized machine the speed drifts over minutes (memory bandwidth shared with
// neighbours), which the spread of the repetitions inside one run cannot show: two runs minutes
// apart may then disagree by more than either's standard deviation. Runs taken at different
// times (best: interleaved with the other models being compared, `--reps 1` each) and pooled
// here report a median and spread over the whole period, so repeated campaigns agree within it.
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace qeval::perf {

// `runs`: (file name, JSON written by `qeval bench --json`). All must be the same benchmark:
// model name, spec, threads, prompt lengths, generation length and batch sizes. Returns the
// first run's JSON with every case's measurements pooled (median, spread and percentiles of the
// union of the repetitions' values; CPU utilization averaged; peak memory the maximum; energy
// summed when every run measured it), "reps" the total, and "combined_from" listing the files.
// Throws qeval::Error naming the file and the mismatch, or a result without per-repetition
// values (written by an older QEval).
nlohmann::json combine_bench_runs(const std::vector<std::pair<std::string, nlohmann::json>>& runs);

// The llama-bench-like table (format_bench_table) of a result JSON, run_bench's or combined.
std::string format_bench_table_json(const nlohmann::json& result);

}  // namespace qeval::perf
