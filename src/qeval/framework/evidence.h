#pragma once
// Coverage evidence (level.h) from a plan (what it will measure) or from a results store (what
// was measured).
#include <filesystem>
#include <string>

#include "qeval/framework/level.h"
#include "qeval/framework/plan.h"
#include "qeval/store/store.h"

namespace qeval::framework {

// Task dimensions come from the task files (tasks folder: `tasks_dir`, else the plan's, else the
// usual resolution); a task without a limit counts as its whole data set. Efficiency scenarios
// measure latency, throughput, memory and CPU load (energy only shows up in a store, where
// RAPL was readable). Architectures are read from the model files that exist.
CoverageEvidence evidence_from_plan(const Plan& plan, const std::string& tasks_dir = "");
CoverageEvidence evidence_from_store(const store::Store& store);

}  // namespace qeval::framework
