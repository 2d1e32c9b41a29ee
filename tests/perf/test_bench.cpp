#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "qeval/perf/bench.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::perf {
namespace {

const char* const kStoriesF32 = "models/stories260K-gguf/stories260K-F32.gguf";
const char* const kStoriesF16 = "models/stories260K-gguf/stories260K-F16.gguf";

BenchConfig tiny_config() {
  BenchConfig c;
  c.prompt_lengths = {16};
  c.gen_tokens = 8;
  c.batch_sizes = {1, 2};
  c.reps = 2;
  c.warmup = 1;
  c.threads = 1;
  c.sample_interval_ms = 5;
  return c;
}

void expect_sane_case(const BenchCase& c, int64_t batch) {
  EXPECT_EQ(c.batch, batch);
  EXPECT_EQ(c.prefill_tokens_per_second.n, 2);
  EXPECT_GT(c.prefill_tokens_per_second.median, 0.0);
  EXPECT_GT(c.decode_tokens_per_second.median, 0.0);
  EXPECT_GT(c.total_tokens_per_second.median, 0.0);
  EXPECT_GT(c.ttft_seconds.median, 0.0);
  EXPECT_GE(c.ttft_seconds.median, c.prefill_seconds.median);  // TTFT includes sampling
  EXPECT_EQ(c.itl_seconds.n, 2 * (8 - 1));                     // every step of every measured rep
  EXPECT_LE(c.itl_seconds.p50, c.itl_seconds.p99);
  // TPOT is the mean step time, so it lies within the ITL range.
  EXPECT_GE(c.tpot_seconds.median, c.itl_seconds.min * 0.999);
  EXPECT_LE(c.tpot_seconds.median, c.itl_seconds.max * 1.001);
  // Decode t/s = batch tokens per step / mean step time.
  EXPECT_NEAR(c.decode_tokens_per_second.median * c.tpot_seconds.median, static_cast<double>(batch),
              0.25 * static_cast<double>(batch));
  // stories260K: 5 layers, kv_dim 32, float K and V for 16 + 8 positions per sequence.
  EXPECT_EQ(c.kv_cache_bytes, batch * 2 * 5 * 32 * 24 * 4);
  EXPECT_GT(c.resources.rss_peak_bytes, 0);
  EXPECT_GT(c.resources.samples, 0);
  EXPECT_TRUE(c.energy.contains("available"));
  if (!c.energy["available"].get<bool>()) {
    EXPECT_FALSE(c.energy["reason"].get<std::string>().empty());
  }
}

TEST(PerfBench, Fp32ModelRunsAsFloat) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  const BenchResult r = run_bench(test::shared_path(kStoriesF32).string(), tiny_config());
  ASSERT_EQ(r.cases.size(), 2u);
  expect_sane_case(r.cases[0], 1);
  expect_sane_case(r.cases[1], 2);
  EXPECT_EQ(r.cases[0].prefill_name(), "pp16");
  EXPECT_EQ(r.cases[0].decode_name(), "tg8");
  EXPECT_EQ(r.cases[1].total_name(), "pp16+tg8@b2");
  EXPECT_EQ(r.weights_execution, "float");
  ASSERT_EQ(r.kernels.size(), 5u * 7u + 1u);  // 7 linears per block + output head
  for (const LinearKernel& k : r.kernels) {
    EXPECT_EQ(k.kernel, "dense-f32") << k.name;
    EXPECT_EQ(k.execution, "float") << k.name;
  }
  EXPECT_EQ(r.threads, 1);
  EXPECT_GT(r.params, 200'000);
  EXPECT_NEAR(r.bits_per_weight, 32.0, 0.01);
  EXPECT_NEAR(r.executed_linear_bits_per_weight, 32.0, 0.01);
  EXPECT_FALSE(r.bits_from_spec);
  EXPECT_GT(r.peak_rss_bytes, 0);
  EXPECT_EQ(r.machine["threads_used"], 1);

  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j["weights_execution"], "float");
  EXPECT_EQ(j["kv_cache_format"], "f32");
  EXPECT_EQ(j["tests"].size(), 6u);
  EXPECT_EQ(j["tests"][0]["test"], "pp16");
  EXPECT_GT(j["tests"][0]["tokens_per_second"].get<double>(), 0.0);
  EXPECT_TRUE(j["machine"].contains("cpu_model"));
  EXPECT_TRUE(j["cases"][0]["itl_seconds"].contains("p99"));
  const std::string table = format_bench_table(r);
  EXPECT_NE(table.find("| pp16 |"), std::string::npos) << table;
  EXPECT_NE(table.find("| tg8@b2 |"), std::string::npos) << table;
  EXPECT_NE(table.find(" ± "), std::string::npos);
}

TEST(PerfBench, HalfPrecisionFileRunsAsDequantizedFloats) {
  QEVAL_REQUIRE_SHARED(kStoriesF16);
  BenchConfig c = tiny_config();
  c.batch_sizes = {1};
  const BenchResult r = run_bench(test::shared_path(kStoriesF16).string(), c);
  for (const LinearKernel& k : r.kernels) {
    EXPECT_EQ(k.source_type, "f16") << k.name;
    // Dense floats expanded from F16, or a packed F16 kernel reading the file's halves.
    if (k.kernel.rfind("dense-f32", 0) == 0) {
      EXPECT_EQ(k.execution, "dequantized-float") << k.name;
    } else {
      EXPECT_EQ(k.execution, "packed") << k.name;
    }
  }
  EXPECT_NE(r.weights_execution, "float");
  EXPECT_NEAR(r.linear_bits_per_weight, 16.0, 0.01);
  if (r.weights_execution == "packed") {
    EXPECT_NEAR(r.executed_linear_bits_per_weight, 16.0, 0.01);
  }
}

TEST(PerfBench, SimulatedSpecIsNeverASpeedUp) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  BenchConfig c = tiny_config();
  c.batch_sizes = {1};
  c.spec = "w4";
  const BenchResult r = run_bench(test::shared_path(kStoriesF32).string(), c);
  EXPECT_EQ(r.spec, "w4");
  EXPECT_TRUE(r.bits_from_spec);
  // 4-bit codes plus one 16-bit scale per output channel of 64 or 172 inputs.
  EXPECT_LT(r.linear_bits_per_weight, 32.0);
  EXPECT_LT(r.bits_per_weight, 32.0);
  bool any_quantized = false;
  for (const LinearKernel& k : r.kernels) {
    if (k.name == "output") {
      EXPECT_EQ(k.execution, k.kernel.rfind("dense-f32", 0) == 0 ? "float" : "packed");
      continue;
    }
    any_quantized = true;
    if (k.kernel.rfind("dense-f32", 0) == 0) {
      EXPECT_EQ(k.execution, "dequantized-float") << k.name;
    } else {
      EXPECT_EQ(k.execution, "packed") << k.name;
    }
  }
  EXPECT_TRUE(any_quantized);
  EXPECT_NE(r.weights_execution, "float");
  if (r.kernels.front().kernel.rfind("dense-f32", 0) == 0) {
    EXPECT_EQ(r.weights_execution, "dequantized-float (simulated quantization: no speed-up expected)");
    // What the kernels read stays 32 bits per weight: the stored size is not a speed claim.
    EXPECT_GT(r.executed_linear_bits_per_weight, 31.0);
  }
}

TEST(PerfBench, KvSpecReportsTheStoredCacheBytes) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  BenchConfig c = tiny_config();
  c.spec = "kv4";
  const BenchResult r = run_bench(test::shared_path(kStoriesF32).string(), c);
  EXPECT_EQ(r.kv_cache_format, "kv4 (stored: q4 asym per token+head)");
  ASSERT_EQ(r.cases.size(), 2u);
  // stories260K: 5 layers, 4 KV heads of head_dim 8. Per head and token, for K and for V: 8 4-bit
  // codes (4 bytes) + a float32 scale + a one-byte zero = 9 bytes, instead of 8 floats (32 bytes).
  for (const BenchCase& bc : r.cases) EXPECT_EQ(bc.kv_cache_bytes, bc.batch * 2 * 5 * 4 * (4 + 4 + 1) * 24) << bc.batch;
  const nlohmann::json j = r.to_json();
  EXPECT_EQ(j["kv_cache_format"], "kv4 (stored: q4 asym per token+head)");
  EXPECT_EQ(j["cases"][1]["kv_cache_bytes"], 2 * 2 * 5 * 4 * 9 * 24);
  EXPECT_NE(format_bench_table(r).find("KV cache: kv4 (stored: q4 asym per token+head)"), std::string::npos);

  c.spec = "kv3";  // no stored form: a float cache behind the simulation hooks
  c.batch_sizes = {1};
  const BenchResult sim = run_bench(test::shared_path(kStoriesF32).string(), c);
  EXPECT_EQ(sim.kv_cache_format, "kv3 (simulated: float cache)");
  EXPECT_EQ(sim.cases[0].kv_cache_bytes, 2 * 5 * 32 * 24 * 4);
}

TEST(PerfBench, ClassifiesExecution) {
  EXPECT_EQ(classify_execution("dense-f32", "f32", false), "float");
  EXPECT_EQ(classify_execution("dense-f32", "f32", true), "dequantized-float");
  EXPECT_EQ(classify_execution("dense-f32 (w3g128: no packed kernel)", "f32", true), "dequantized-float");
  EXPECT_EQ(classify_execution("dense-f32", "q4_0", false), "dequantized-float");
  EXPECT_EQ(classify_execution("q4_0/avx512", "f32", true), "packed");
  std::vector<LinearKernel> ks{{"blk.0.attn_q", "q4_0/avx2", "f32", "packed"}, {"output", "dense-f32", "f32", "float"}};
  EXPECT_EQ(overall_execution(ks), "packed");
  ks.push_back({"blk.0.attn_k", "dense-f32", "f32", "dequantized-float"});
  EXPECT_EQ(overall_execution(ks), "mixed");
  EXPECT_EQ(overall_execution({{"output", "dense-f32", "f32", "float"}}), "float");
  EXPECT_EQ(overall_execution({{"x", "dense-f32", "q8_0", "dequantized-float"}}),
            "dequantized-float (simulated quantization: no speed-up expected)");
}

TEST(PerfBench, RejectsBadConfigurations) {
  BenchConfig c = tiny_config();
  c.gen_tokens = 1;
  EXPECT_THROW(c.validate(), Error);
  c = tiny_config();
  c.reps = 0;
  EXPECT_THROW(c.validate(), Error);
  c = tiny_config();
  c.prompt_lengths = {};
  EXPECT_THROW(c.validate(), Error);
  c = tiny_config();
  c.batch_sizes = {0};
  EXPECT_THROW(c.validate(), Error);
  EXPECT_THROW(run_bench("/nonexistent/model.gguf", tiny_config()), Error);
}

// The CLI end to end: table on stdout, progress on stderr, JSON file written.
std::string run_cli(const std::string& args, int* status) {
  const std::string cmd = std::string(QEVAL_EXE) + " " + args;
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  *status = p ? pclose(p) : -1;
  return out;
}

TEST(PerfBenchCli, WritesTableAndJson) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  test::TempDir dir;
  const std::string json_path = dir.file("bench.json");
  int status = 0;
  const std::string out = run_cli("bench " + test::shared_path(kStoriesF32).string() +
                                      " --prompt 16 --gen 8 --batch 1 --reps 2 --warmup 1 --threads 1 --json " + json_path +
                                      " 2>" + dir.file("stderr.txt"),
                                  &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("| pp16 |"), std::string::npos) << out;
  EXPECT_NE(out.find("| tg8 |"), std::string::npos) << out;
  const std::string progress = test::read_text(dir.file("stderr.txt"));
  EXPECT_NE(progress.find("rep 2/2"), std::string::npos) << progress;
  const nlohmann::json j = nlohmann::json::parse(test::read_text(json_path));
  EXPECT_EQ(j["weights_execution"], "float");
  EXPECT_GT(j["cases"][0]["prefill_tokens_per_second"]["median"].get<double>(), 0.0);
  EXPECT_GT(j["cases"][0]["decode_tokens_per_second"]["median"].get<double>(), 0.0);
  EXPECT_GT(j["peak_rss_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(j["kernels"][0]["kernel"], "dense-f32");
  EXPECT_TRUE(j["machine"].contains("blas"));
}

TEST(PerfBenchCli, BadInputIsOneLineErrorAndNoFile) {
  QEVAL_REQUIRE_SHARED(kStoriesF32);
  test::TempDir dir;
  const std::string json_path = dir.file("bench.json");
  int status = 0;
  std::string out = run_cli("bench " + test::shared_path(kStoriesF32).string() + " --gen 1 --json " + json_path + " 2>&1", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("--gen must be >= 2"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(json_path));
  out = run_cli("bench /nonexistent.gguf 2>&1", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("/nonexistent.gguf"), std::string::npos) << out;
}

}  // namespace
}  // namespace qeval::perf
