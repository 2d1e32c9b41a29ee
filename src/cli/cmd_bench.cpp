// qeval bench MODEL [--spec SPEC] [--calib FILE] --prompt 128,512 --gen 128 --batch 1,4,16 --reps 5 --warmup 1
//             --threads N [--json FILE]
// qeval bench --endpoint URL --model NAME [--api-key-env VAR] [--pid PID] --concurrency 1,4,16 --requests N
//             --duration S --prompt 128 --gen 128 [--json FILE]
// qeval bench --combine RUN.json RUN.json... [--json FILE]: pool the repetitions of repeated runs
//             (perf/combine.h)
// The table goes to stdout, progress lines to stderr, the JSON (with the machine) to --json FILE
// (written atomically; "-" for stdout instead of the table).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/command.h"
#include "qeval/io/hf_config.h"
#include "qeval/perf/bench.h"
#include "qeval/perf/combine.h"
#include "qeval/perf/endpoint.h"
#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct BenchArgs {
  std::string model;  // positional: model path (in-process) or, with --endpoint, unused
  std::string endpoint, served_model, api_key_env, json_out;
  std::vector<std::string> combine;  // result files to pool
  perf::BenchConfig bench;
  std::vector<int64_t> prompts{512};
  std::vector<int> concurrency{1};
  int64_t requests = 8;
  double duration = 60;
  double request_timeout = 300;
  int pid = 0;
  bool ignore_eos = false;
};

void progress_line(const std::string& s) {
  std::fprintf(stderr, "%s\n", s.c_str());
  std::fflush(stderr);
}

void emit(const std::string& json_out, const nlohmann::json& j, const std::string& table) {
  if (json_out == "-") {
    std::puts(j.dump(2).c_str());
    return;
  }
  if (!json_out.empty()) write_file_atomic(json_out, j.dump(2) + "\n");
  std::fputs(table.c_str(), stdout);
  if (!json_out.empty()) std::printf("JSON written to %s\n", json_out.c_str());
}

int run(BenchArgs& a) {
  if (!a.combine.empty()) {
    if (!a.model.empty() || !a.endpoint.empty()) fail("bench: --combine takes result files only, not MODEL or --endpoint");
    std::vector<std::pair<std::string, nlohmann::json>> runs;
    for (const std::string& f : a.combine) runs.emplace_back(f, read_json_file(f));
    const nlohmann::json j = perf::combine_bench_runs(runs);
    emit(a.json_out, j, perf::format_bench_table_json(j));
    return 0;
  }
  if (!a.endpoint.empty()) {
    if (!a.model.empty()) fail("bench: give either MODEL (in-process) or --endpoint URL, not both");
    perf::EndpointBenchConfig c;
    c.url = a.endpoint;
    c.model = a.served_model;
    if (!a.api_key_env.empty()) {
      const char* key = std::getenv(a.api_key_env.c_str());
      if (!key || !*key) fail("bench: --api-key-env " + a.api_key_env + ": environment variable not set");
      c.api_key = key;
    }
    c.pid = a.pid;
    c.concurrency = a.concurrency;
    c.requests = a.requests;
    c.duration_s = a.duration;
    if (a.prompts.size() != 1) fail("bench: --endpoint takes one --prompt length");
    c.prompt_tokens = a.prompts.front();
    c.gen_tokens = a.bench.gen_tokens;
    c.request_timeout_s = a.request_timeout;
    c.ignore_eos = a.ignore_eos;
    const perf::EndpointResult r = perf::run_endpoint_bench(c, progress_line);
    emit(a.json_out, r.to_json(), perf::format_endpoint_table(r));
    return 0;
  }
  if (a.model.empty()) fail("bench: MODEL (a GGUF file or HF directory) or --endpoint URL is required");
  a.bench.prompt_lengths = a.prompts;
  const perf::BenchResult r = perf::run_bench(a.model, a.bench, progress_line);
  emit(a.json_out, r.to_json(), perf::format_bench_table(r));
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  app.add_option("model", a->model, "GGUF file or HF directory (in-process benchmark)");
  app.add_option("--spec", a->bench.spec, "quantize in memory with this spec first (default fp32)");
  app.add_option("--calib", a->bench.calib_file, "calibration text for --spec");
  app.add_option("--calib-samples", a->bench.calib_samples, "calibration windows (default 128)");
  app.add_option("--calib-seqlen", a->bench.calib_seqlen, "calibration window length (default 512)");
  app.add_option("--calib-seed", a->bench.calib_seed, "calibration sampling seed (default 0)");
  app.add_option("-p,--prompt", a->prompts, "prompt lengths in tokens, comma-separated (default 512)")->delimiter(',');
  app.add_option("-n,--gen", a->bench.gen_tokens, "generated tokens per sequence (default 128)");
  app.add_option("-b,--batch", a->bench.batch_sizes, "batch sizes, comma-separated (default 1)")->delimiter(',');
  app.add_option("-r,--reps", a->bench.reps, "measured repetitions (default 5)");
  app.add_option("--warmup", a->bench.warmup, "unmeasured warm-up repetitions (default 1)");
  app.add_option("-t,--threads", a->bench.threads, "threads (default: hardware concurrency)");
  app.add_option("--seed", a->bench.seed, "seed of the random prompt tokens (default 1)");
  app.add_flag("--kv-f16", a->bench.kv_f16, "round K/V to F16 like llama.cpp's default KV cache");
  app.add_flag("--ggml-compat", a->bench.ggml_compat, "llama.cpp-compatible activation rounding and kernels");
  app.add_option("--json", a->json_out, "write the JSON result to FILE ('-': print it instead of the table)");
  app.add_option("--endpoint", a->endpoint, "benchmark an OpenAI-compatible server at URL instead of a model file");
  app.add_option("--model", a->served_model, "model name sent to the endpoint");
  app.add_option("--api-key-env", a->api_key_env, "environment variable holding the endpoint's bearer token");
  app.add_option("--pid", a->pid, "server process to sample (CPU, memory) from /proc");
  app.add_option("--concurrency", a->concurrency, "concurrent clients, comma-separated (default 1)")->delimiter(',');
  app.add_option("--requests", a->requests, "requests per concurrency level, at most (default 8)");
  app.add_option("--duration", a->duration, "seconds per concurrency level, at most (default 60)");
  app.add_option("--request-timeout", a->request_timeout, "seconds per request (default 300)");
  app.add_option("--combine", a->combine, "pool the repetitions of these result files (JSON of earlier runs of one benchmark)");
  app.add_flag("--ignore-eos", a->ignore_eos, "ask the server to ignore EOS (llama-server, vLLM extension)");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("bench", "Speed, latency, memory, CPU and energy of a model in process or of an OpenAI-compatible endpoint", setup);

}  // namespace
}  // namespace qeval::cli
