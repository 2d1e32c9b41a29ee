#pragma once
// In-process benchmark of a model (llama-bench-like): for every prompt length P and batch size
// B, `reps` measured repetitions (after `warmup` unmeasured ones) of
//   prefill: B prompts of P random token ids, each appended to its own KV cache;
//   decode:  gen_tokens greedy tokens per sequence (EOS ignored, as llama-bench does), one
//            token per sequence per step; the first token is sampled from the prefill logits.
// Per repetition: prefill seconds and tokens/s, time to first token (TTFT: start -> every
// sequence has its first token), time per output token (TPOT: decode seconds / (gen - 1)),
// every inter-token latency (ITL), decode tokens/s (B * (gen - 1) / decode seconds) and
// end-to-end tokens/s. Reported: median and spread over repetitions; ITL percentiles over all
// steps of all measured repetitions.
//
// Batch B > 1: the B sequences go through one batched forward pass per step
// (Engine::append_batch): prefill of all B prompts together, then one new token per sequence
// per step, so each weight matrix is read once per step for the whole batch, as a batching
// server runs them. "batch_mode" in the JSON says so.
//
// Honesty about quantization: each result lists, per linear layer, the kernel that ran
// (LinearWeights::format()) and classifies the run ("weights_execution"): "float" (float
// weights, nothing quantized), "packed" (low-bit kernels), "dequantized-float (simulated
// quantization: no speed-up expected)" (quantized or half-precision weights expanded to
// floats), or "mixed". A simulated spec is never presented as a speed-up.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qeval/perf/sampler.h"
#include "qeval/perf/stats.h"

namespace qeval::perf {

struct BenchConfig {
  std::vector<int64_t> prompt_lengths{512};
  int64_t gen_tokens = 128;  // >= 2 (one token comes from prefill; decode needs one more)
  std::vector<int64_t> batch_sizes{1};
  int reps = 5;
  int warmup = 1;
  int threads = 0;           // 0: hardware concurrency
  std::string spec = "fp32"; // applied in memory (quant/in_memory.h) when not fp32
  std::string calib_file;    // calibration text for specs that need it
  int64_t calib_samples = 128;
  int64_t calib_seqlen = 512;
  uint64_t calib_seed = 0;
  uint64_t seed = 1;         // prompt token ids
  bool kv_f16 = false;
  bool ggml_compat = false;
  int sample_interval_ms = 50;
  // Throws qeval::Error naming the bad field ("bench: --gen must be >= 2").
  void validate() const;
};

// One (prompt length, batch size) case.
struct BenchCase {
  int64_t prompt_tokens = 0, gen_tokens = 0, batch = 1;
  int reps = 0;
  Summary prefill_seconds, prefill_tokens_per_second;
  Summary ttft_seconds;
  Summary tpot_seconds;
  Summary itl_seconds;                // pooled over steps and repetitions (p50 / p90 / p99)
  Summary decode_seconds, decode_tokens_per_second;
  Summary total_seconds, total_tokens_per_second;  // B * (P + gen) / (prefill + decode)
  int64_t kv_cache_bytes = 0;         // all B caches for P + gen positions, in the engine's format
                                      // (Engine::kv_cache_bytes: floats, or codes + scales + zeros)
  ResourceUsage resources;            // measured repetitions only
  nlohmann::json energy;              // energy_json() over the measured repetitions
  // llama-bench style names: "pp512", "tg128", "pp512+tg128" (suffix "@b4" for B > 1).
  std::string prefill_name() const;
  std::string decode_name() const;
  std::string total_name() const;
  nlohmann::json to_json() const;
};

struct LinearKernel {
  std::string name;         // "blk.0.attn_q", "output"
  std::string kernel;       // LinearWeights::format(): "dense-f32", "q4_0/avx512", ...
  std::string source_type;  // the file tensor's type ("f32", "f16", "q4_0", ...)
  std::string execution;    // "float" | "dequantized-float" | "packed"
};

struct BenchResult {
  std::string model_path, model_name, architecture;
  std::string spec;             // canonical spec string
  int64_t params = 0;           // all tensors (an aliased output counted once)
  int64_t model_bytes = 0;      // file tensor bytes, or with the spec's effective bits
  double bits_per_weight = 0;   // 8 * model_bytes / params
  int64_t linear_params = 0;
  double linear_bits_per_weight = 0;  // decoder linears + head as the run stored them
  int64_t executed_linear_bytes = 0;   // what the kernels read per pass (LinearWeights::weight_bytes)
  double executed_linear_bits_per_weight = 0;  // 32 for dequantized floats, whatever the spec
  bool bits_from_spec = false;  // true: sizes are the spec's effective bits (applied in memory)
  std::string weights_execution;
  std::vector<LinearKernel> kernels;  // forward order
  std::string kernel_summary;   // "dense-f32 x155" etc.
  std::string kv_cache_format = "f32";  // kv_storage_description(): "kv4 (stored: q4 asym per token+head)"
  std::string batch_mode;
  int threads = 0;
  BenchConfig config;
  std::vector<BenchCase> cases;
  int64_t peak_rss_bytes = 0;   // VmHWM of this process at the end (includes model loading)
  nlohmann::json machine;       // describe_machine()
  double load_seconds = 0;      // model load + engine construction (+ in-memory quantization)
  nlohmann::json to_json() const;
};

// Throws qeval::Error for bad configurations, unreadable models and inapplicable specs.
// `progress` receives human-readable lines (the CLI prints them on stderr).
BenchResult run_bench(const std::string& model_path, const BenchConfig& config,
                      const std::function<void(const std::string&)>& progress = {});

// Classifies one linear layer: kernels not named "dense-f32..." are "packed"; dense floats are
// "float" when the file held F32 and no spec quantized the weights, "dequantized-float" otherwise.
std::string classify_execution(std::string_view kernel, std::string_view source_type, bool weights_quantized);
// The run's overall label from the per-layer labels (float layers such as a full-precision
// head do not make a quantized run "mixed").
std::string overall_execution(const std::vector<LinearKernel>& kernels);

// llama-bench-like markdown table: model | size | params | backend | threads | test | t/s.
std::string format_bench_table(const BenchResult& result);

}  // namespace qeval::perf
