// Engine speed on a TinyLlama-1.1B-shaped model (random weights of the real shapes), plus the
// OpenBLAS sgemm peak on the model's matrix shapes. See docs/BENCHMARKS.md for figures.
//
// Model: the GGUF named by $QEVAL_BENCH_MODEL (F32) / $QEVAL_BENCH_MODEL_F16 (F16), made with
//   qeval synth --arch llama --preset tinyllama-1.1b --seed 1 -o /tmp/tinyllama-f32.gguf
//   qeval synth --arch llama --preset tinyllama-1.1b --seed 1 --type f16 -o /tmp/tinyllama-f16.gguf
// When a variable is unset the model is synthesized in-process (seed 1; the F16 one is written
// to a temporary GGUF and loaded back, as the files above would be). Only one model is kept
// in memory at a time: benchmarks are registered grouped by weight type.
//
// Benchmarks (2 threads; $QEVAL_BENCH_THREADS overrides):
//  BM_Prefill/<type>/<batch>   512-token prompt(s). batch 1: Engine::append on an empty cache
//                              (logits of the last token, as generation does). batch 8: one
//                              Engine::evaluate call with 8 different 512-token sequences (4096
//                              rows, split by the engine into 2048-row rounds), last-token logits.
//  BM_Decode/<type>/<batch>    One token per step per sequence after a 512-token prompt.
//                              batch 1: 128 steps of Engine::append(cache, 1 token).
//                              batch 8: the engine has no batched-decode API (Engine::forward is
//                              private); 8 KV caches (copies of one prefilled cache) advance by one
//                              Engine::append each per step, 16 steps = 128 tokens. Each append
//                              reads all weights again, so batch 8 costs 8 batch-1 steps.
//                              Greedy (argmax) next tokens. Only the decode loop is timed.
//  BM_Sgemm/M/N/K              cblas_sgemm(RowMajor, NoTrans, Trans) as the engine calls it:
//                              x[M,K] * W[N,K]^T, OpenBLAS with 2 threads. GFLOP/s = 2MNK/t.
// Counters: tok/s; for decode also weight_GB_per_tok (bytes of linear-layer weights one token
// reads, as stored by the engine) and eff_GB/s = tok/s * weight_GB_per_tok, to be divided by
// bench_memory_bandwidth's 2-thread figure for the roofline fraction; for prefill GFLOP/s =
// 2 * (decoder-block linear parameters * tokens + output-head parameters * prompts) / t
// (attention, norms and RoPE excluded), to compare with BM_Sgemm.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/engine/synth.h"
#include "qeval/io/model.h"
#include "qeval/io/model_export.h"

namespace {

constexpr int64_t kPrompt = 512;
constexpr int64_t kDecode = 128;

int bench_threads() {
  const char* e = std::getenv("QEVAL_BENCH_THREADS");
  return e ? std::max(1, std::atoi(e)) : 2;
}

enum class WType { F32, F16 };
const char* wtype_name(WType t) { return t == WType::F32 ? "F32" : "F16"; }

// One model (and its engine) alive at a time.
struct Loaded {
  WType type = WType::F32;
  std::unique_ptr<qeval::Model> model;
  std::unique_ptr<qeval::Engine> engine;
  std::string tmp_file;
  ~Loaded() {
    engine.reset();
    model.reset();
    if (!tmp_file.empty()) std::filesystem::remove(tmp_file);
  }
};
std::unique_ptr<Loaded> g_loaded;

qeval::Model synth_tinyllama() {
  const auto cfg = qeval::synth_preset("tinyllama-1.1b");
  return qeval::synth_model(cfg, 1, qeval::synth_spm_vocab(cfg.vocab_size), bench_threads());
}

qeval::Engine& engine_for(WType t) {
  if (g_loaded && g_loaded->type == t) return *g_loaded->engine;
  g_loaded.reset();
  g_loaded = std::make_unique<Loaded>();
  g_loaded->type = t;
  const char* path = std::getenv(t == WType::F32 ? "QEVAL_BENCH_MODEL" : "QEVAL_BENCH_MODEL_F16");
  if (path && *path) {
    g_loaded->model = std::make_unique<qeval::Model>(qeval::load_model(path));
  } else if (t == WType::F32) {
    g_loaded->model = std::make_unique<qeval::Model>(synth_tinyllama());
  } else {
    g_loaded->tmp_file = (std::filesystem::temp_directory_path() / "qeval-bench-tinyllama-f16.gguf").string();
    {
      const qeval::Model m = synth_tinyllama();
      qeval::GGUFExportOptions o;
      o.type = qeval::DType::F16;
      qeval::save_gguf(m, g_loaded->tmp_file, o);
    }
    g_loaded->model = std::make_unique<qeval::Model>(qeval::load_model(g_loaded->tmp_file));
  }
  // Default (float32) mode: F16 weights are dequantized to F32 at load (linear.h).
  g_loaded->engine = std::make_unique<qeval::Engine>(*g_loaded->model, qeval::EngineOptions{.threads = bench_threads()});
  return *g_loaded->engine;
}

// Bytes of linear-layer weights read per token: every linear layer's weights as the engine
// stores them (dense-f32 and the ggml formats all hold float32 values).
double weight_bytes_per_token(const qeval::Engine& e) {
  double b = 0;
  // As stored: F16 and packed formats read fewer bytes than 4 per weight.
  for (const auto& id : e.linear_ids()) b += static_cast<double>(e.linear(id).weights->weight_bytes());
  return b;
}

// Linear-layer parameters of the decoder blocks (rows x params = FLOPs/2 per token) and of the
// output head (computed for the last position of each prompt only).
double block_params(const qeval::Engine& e) {
  double p = 0;
  for (const auto& id : e.linear_ids())
    if (id.layer >= 0) p += static_cast<double>(e.linear(id).in_features()) * static_cast<double>(e.linear(id).out_features());
  return p;
}
double head_params(const qeval::Engine& e) {
  const auto& L = e.linear(qeval::LinearId::output());
  return static_cast<double>(L.in_features()) * static_cast<double>(L.out_features());
}

std::vector<qeval::TokenId> prompt(const qeval::Engine& e, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<qeval::TokenId> d(3, static_cast<qeval::TokenId>(e.vocab_size() - 1));
  std::vector<qeval::TokenId> p(static_cast<size_t>(kPrompt));
  p[0] = 1;  // BOS
  for (size_t i = 1; i < p.size(); ++i) p[i] = d(rng);
  return p;
}

qeval::TokenId argmax(std::span<const float> v) {
  return static_cast<qeval::TokenId>(std::max_element(v.begin(), v.end()) - v.begin());
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void BM_Prefill(benchmark::State& state, WType t) {
  const int64_t batch = state.range(0);
  auto& e = engine_for(t);
  std::vector<std::vector<qeval::TokenId>> prompts;
  for (int64_t s = 0; s < batch; ++s) prompts.push_back(prompt(e, static_cast<uint32_t>(s + 1)));
  auto cache = e.new_cache(kPrompt);
  std::vector<qeval::SequenceView> views;
  for (const auto& p : prompts) views.push_back({p, kPrompt - 1});
  for (auto _ : state) {
    const auto t0 = Clock::now();
    if (batch == 1) {
      cache.clear();
      benchmark::DoNotOptimize(argmax(e.append(cache, prompts[0])));
    } else {
      qeval::TokenId sink = 0;
      e.evaluate(views, [&](size_t, int64_t, const float* logits) {
        sink += argmax(std::span<const float>(logits, static_cast<size_t>(e.vocab_size())));
      });
      benchmark::DoNotOptimize(sink);
    }
    state.SetIterationTime(seconds_since(t0));
  }
  const double tokens = static_cast<double>(batch * kPrompt);
  state.counters["tok/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  const double flops = 2.0 * (block_params(e) * tokens + head_params(e) * static_cast<double>(batch));
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Decode(benchmark::State& state, WType t) {
  const int64_t batch = state.range(0);
  const int64_t steps = batch == 1 ? kDecode : kDecode / batch;
  auto& e = engine_for(t);
  const auto p = prompt(e, 1);
  auto base = e.new_cache(kPrompt + kDecode);
  const qeval::TokenId first = argmax(e.append(base, p));
  for (auto _ : state) {
    std::vector<qeval::KVCache> caches(static_cast<size_t>(batch), base);
    std::vector<qeval::TokenId> next(static_cast<size_t>(batch), first);
    // Different sequences: perturb the first decoded token per sequence.
    for (int64_t s = 1; s < batch; ++s) next[static_cast<size_t>(s)] = static_cast<qeval::TokenId>(3 + s);
    const auto t0 = Clock::now();
    for (int64_t step = 0; step < steps; ++step)
      for (int64_t s = 0; s < batch; ++s) {
        auto& tok = next[static_cast<size_t>(s)];
        tok = argmax(e.append(caches[static_cast<size_t>(s)], std::span<const qeval::TokenId>(&tok, 1)));
      }
    state.SetIterationTime(seconds_since(t0));
    benchmark::DoNotOptimize(next.data());
  }
  const double tokens = static_cast<double>(steps * batch);
  const double wb = weight_bytes_per_token(e);
  state.counters["tok/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_GB_per_tok"] = wb * 1e-9;
  state.counters["eff_GB/s"] = benchmark::Counter(tokens * wb * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Sgemm(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  openblas_set_num_threads(bench_threads());
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(M * K)), w(static_cast<size_t>(N * K)), y(static_cast<size_t>(M * N));
  for (auto& v : x) v = d(rng);
  for (auto& v : w) v = d(rng) * 0.02f;
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M), static_cast<blasint>(N),
                static_cast<blasint>(K), 1.0f, x.data(), static_cast<blasint>(K), w.data(), static_cast<blasint>(K), 0.0f,
                y.data(), static_cast<blasint>(N));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(M * N * K) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(openblas_get_config());
}

// TinyLlama-1.1B linear shapes at M = 512 rows: q/o (2048x2048), k/v (256x2048), gate/up
// (5632x2048), down (2048x5632), output (32000x2048).
BENCHMARK(BM_Sgemm)
    ->Args({512, 2048, 2048})
    ->Args({512, 256, 2048})
    ->Args({512, 5632, 2048})
    ->Args({512, 2048, 5632})
    ->Args({512, 32000, 2048})
    ->UseRealTime()
    ->MinTime(2.0)
    ->Unit(benchmark::kMillisecond);

void register_model_benchmarks() {
  for (WType t : {WType::F32, WType::F16}) {
    const std::string n = wtype_name(t);
    benchmark::RegisterBenchmark(("BM_Prefill/" + n).c_str(), BM_Prefill, t)
        ->Arg(1)
        ->Arg(8)
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kSecond);
    benchmark::RegisterBenchmark(("BM_Decode/" + n).c_str(), BM_Decode, t)
        ->Arg(1)
        ->Arg(8)
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kSecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_model_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_loaded.reset();
  return 0;
}
