#pragma once
// Evaluation plans: one YAML file naming the models, the quantization configurations (written
// out or declared as sweeps), the quality tasks, perplexity / KL-divergence cells, efficiency
// scenarios, generations for side-by-side reading, and seeds. The format is documented in
// docs/FRAMEWORK.md; plans/ has examples. `${VAR}` in any string is replaced by the environment
// variable VAR (an unset variable is an error; ${QEVAL_SHARED} defaults to ../shared).
//
// A plan expands into configurations (model-independent: spec + calibration size + seed) and,
// per model, cells (framework/cells.h).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace qeval::framework {

struct PlanModel {
  std::string name;          // label in results (unique in the plan)
  std::string path;          // GGUF file, HF directory or packed model
};

// One quantization configuration: the spec, the calibration-set size it was calibrated on (0:
// the spec needs no calibration) and the seed (-1: defaults). `origin` says which declaration
// produced it (for reports: "specs", "grid", "calibration", "ablation of w4g32-awq-gptq").
struct Configuration {
  std::string spec;           // canonical
  int64_t calib_samples = 0;
  int64_t seed = -1;
  std::string origin;
  std::string label() const;  // "w4g32-gptq", "w4g32-gptq@calib64", "w4@seed2"
  friend bool operator==(const Configuration& a, const Configuration& b) {
    return a.spec == b.spec && a.calib_samples == b.calib_samples && a.seed == b.seed;
  }
};

struct PlanTask {
  std::string name;
  std::optional<int64_t> limit;        // docs; absent: the plan's default, else every doc
  std::optional<int> num_fewshot;      // absent: the task file's
};

struct PlanPerplexity {
  std::string name;     // label ("tinystories"); default: the file's stem
  std::string file;
  int64_t ctx = 128;
  std::string method = "llamacpp";  // llamacpp | gptq | rolling
  int64_t chunks = -1;              // -1: all
};

struct PlanKld {
  std::string name;
  std::string file;
  int64_t ctx = 128;
  int64_t chunks = -1;
};

struct PlanScenario {
  std::string name;       // "pp64-tg16"
  int64_t prompt = 64;    // prompt tokens
  int64_t gen = 16;       // generated tokens
  int64_t batch = 1;
  int reps = 3;
  int warmup = 1;
};

struct PlanGenerations {
  std::vector<std::string> prompts;
  int64_t max_tokens = 32;
};

struct PlanCalibration {
  std::string file;           // empty: no calibration text (specs needing one are refused)
  int64_t samples = 128;
  int64_t seqlen = 128;
};

struct Plan {
  std::string name;
  std::string description;
  std::string path;           // the plan file
  std::string sha256;         // of the plan file's bytes
  std::vector<PlanModel> models;
  std::vector<Configuration> configurations;  // expanded, duplicates removed, fp32 first
  PlanCalibration calibration;
  std::vector<PlanTask> tasks;
  std::vector<PlanPerplexity> perplexity;
  std::vector<PlanKld> kld;
  std::vector<PlanScenario> efficiency;
  std::optional<PlanGenerations> generations;
  bool layer_stats = true;    // record per-layer quantization statistics
  int threads = 0;            // 0: hardware concurrency
  std::string data_dir, tasks_dir;  // empty: the usual resolution (--data-dir / env / default)
};

// Reads, expands and checks a plan. Throws qeval::Error "<file>:<line>: <problem>".
Plan load_plan(const std::filesystem::path& file);
// The same from text (`name` is used in messages and as Plan::path).
Plan parse_plan(const std::string& text, const std::string& name);

// Does a spec use calibration data (GPTQ, AWQ, SmoothQuant, static activation scales)?
bool spec_needs_calibration(const std::string& canonical_spec);

}  // namespace qeval::framework
