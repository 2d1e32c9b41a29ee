#pragma once
// Runs a plan into a results store: every (model, configuration) is quantized once in memory
// and reused for all its quality cells (tasks, perplexity, KL divergence, generations);
// efficiency cells run perf::run_bench, which loads and quantizes the model in its own engine
// so that the measurement sees only the model under test. Finished cells (same cell key in
// the store) are skipped unless `force`; each cell is written in one transaction when complete.
//
// CELL KEYS identify a measurement across runs:
//   <kind>|model=<name>:<sha256 prefix>|spec=<spec>|calib=<n>|seed=<s>|<what>
// where <what> is task=<name>:<task file sha256 prefix>|limit=<n>|fewshot=<k>,
// ppl=<name>|file=<sha256 prefix>|ctx=..|method=..|chunks=.., kld=..., bench=<scenario fields>,
// generations=<sha256 prefix of the prompts and max tokens>, or quantize.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qeval/framework/plan.h"
#include "qeval/store/store.h"

namespace qeval::framework {

struct RunOptions {
  bool force = false;          // recompute cells that are already in the store
  std::string command;         // the command line, recorded with the run
  std::string data_dir;        // overrides the plan's (and the default resolution)
  std::string tasks_dir;
  int threads = -1;            // >= 0 overrides the plan's
  std::function<void(const std::string&)> log;  // progress lines (stderr in the CLI)
};

struct RunSummary {
  int64_t run_id = 0;
  int64_t total = 0;       // cells in the plan
  int64_t skipped = 0;     // already in the store
  int64_t computed = 0;    // computed and written
  int64_t kept_other = 0;  // computed, but another process wrote the same cell first
  double seconds = 0;
};

// One planned cell (before it is run).
struct PlannedCell {
  std::string key;
  std::string kind;        // quantize | task | perplexity | kld | bench | generations
  size_t model = 0;        // index into Plan::models
  size_t config = 0;       // index into Plan::configurations
  size_t item = 0;         // index into the plan's tasks / perplexity / kld / efficiency
  std::string name;        // task / text / scenario name ("" for quantize, generations)
};

// Every cell of the plan, in run order. `model_hashes[i]` is the SHA-256 of plan.models[i];
// `task_hashes` maps task names to their files' SHA-256; `file_hashes` maps perplexity / kld files.
std::vector<PlannedCell> plan_cells(const Plan& plan, const std::vector<std::string>& model_hashes,
                                    const std::map<std::string, std::string>& task_hashes,
                                    const std::map<std::string, std::string>& file_hashes);

RunSummary run_plan(const Plan& plan, store::Store& store, const RunOptions& options);

}  // namespace qeval::framework
