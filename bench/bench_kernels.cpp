// Packed-kernel speed on TinyLlama-1.1B's matrix shapes (out x in: 2048x2048 attention,
// 5632x2048 gate/up, 2048x5632 down), through the engine's Linear interface exactly as the
// decoder calls it (make_linear / make_packed_weights, the engine's ThreadPool, OpenBLAS).
//
//  BM_Gemv/<format>/<out>/<in>    one activation row (decode). Counters: GB/s = weight bytes
//                                 as stored / time (compare with bench_memory_bandwidth's
//                                 2-thread read bandwidth for the roofline fraction), and
//                                 rel_f32 is left to the reader (same shape, format f32).
//  BM_Gemm/<format>/<out>/<in>    128 activation rows (prefill): GFLOP/s = 2*128*out*in / t.
// Formats: f32 (dense, OpenBLAS sgemm / threaded GEMV), f16, q8_0, q4_0, q4_1 (ggml blocks as a
// GGUF file holds them), w8 (int8 per output channel, symmetric), w4g32, w4g128, w4g128-asym
// (QEval packed). Weights are random (seed 1) and quantized with the real encoders; values do
// not affect speed. The label names the kernel that ran ("q4_0/avx512"). Threads: 2, or
// $QEVAL_BENCH_THREADS. QEVAL_ISA=avx2|scalar caps the instruction set.
//
//  BM_IntGemv/<format>/2048/5632  one activation row through the integer-activation kernels
//                                 (kernels/int8_activation.h; w8a8, w4g32a8, w4g128a8: the
//                                 weight format with a8 per-token inputs, as a packed W8A8 /
//                                 W4A8 directory runs): activation quantization included.
//                                 Label "w4g128a8/avx512-vnni"; QEVAL_ISA=avx2|scalar caps it.
//
// Whole model, when $QEVAL_BENCH_MODEL names one (GGUF file or packed directory, loaded as
// `qeval perplexity` loads it):
//  BM_ModelPrefill   Engine::append of a 512-token prompt on an empty cache. tok/s.
//  BM_ModelDecode    after a 32-token prompt, 64 steps of Engine::append(1 token) (greedy);
//                    only the steps are timed. tok/s, weight_GB_per_tok (bytes of all linear
//                    weights as stored: what each token reads), eff_GB/s = their product (the
//                    roofline fraction is eff_GB/s over the machine's read bandwidth,
//                    bench_memory_bandwidth). The label lists the kernels that ran.
// Prompt tokens are deterministic ids (7919 * i mod vocabulary), so any model works.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/engine/linear.h"
#include "qeval/engine/thread_pool.h"
#include "qeval/io/dequantize.h"
#include "qeval/io/packed_weight.h"
#include "qeval/io/tensor.h"
#include "qeval/quant/export.h"

namespace {

int bench_threads() {
  const char* e = std::getenv("QEVAL_BENCH_THREADS");
  return e ? std::max(1, std::atoi(e)) : 2;
}

qeval::ThreadPool& pool() {
  static qeval::ThreadPool p(bench_threads());
  return p;
}

const char* kFormats[] = {"f32", "f16", "q8_0", "q4_0", "q4_1", "w8", "w4g32", "w4g128", "w4g128-asym"};
constexpr int64_t kShapes[][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}};
constexpr int64_t kPrefillRows = 128;

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

// A QEval packed tensor with random codes and scales (bits, group 0 = per channel, asym).
qeval::Tensor packed_tensor(int bits, int64_t out, int64_t in, int64_t group, bool asym) {
  struct Store {
    std::vector<uint8_t> codes;
    std::vector<float> scales, zeros;
  };
  auto st = std::make_shared<Store>();
  std::mt19937 rng(1);
  const size_t nbytes = static_cast<size_t>((out * in * bits + 7) / 8);
  st->codes.resize(nbytes);
  for (auto& b : st->codes) b = static_cast<uint8_t>(rng());
  const int64_t gs = group > 0 ? group : in;
  const int64_t groups = out * ((in + gs - 1) / gs);
  st->scales.assign(static_cast<size_t>(groups), 0.001f);
  if (asym) st->zeros.assign(static_cast<size_t>(groups), 7.0f);
  auto p = std::make_shared<qeval::PackedWeight>();
  p->bits = bits;
  p->rows = out;
  p->cols = in;
  p->group_size = gs;
  p->codes = st->codes.data();
  p->codes_bytes = nbytes;
  p->scales = st->scales;
  p->zeros = st->zeros;
  p->owner = st;
  return qeval::Tensor::from_packed("w", p);
}

qeval::Tensor make_tensor(const std::string& fmt, int64_t out, int64_t in) {
  using qeval::DType;
  if (fmt.size() > 2 && fmt.compare(fmt.size() - 2, 2, "a8") == 0) {
    // Integer activations: the weight format, inputs quantized per token (linear_int8_activation.h).
    qeval::Tensor t = make_tensor(fmt.substr(0, fmt.size() - 2), out, in);
    t.input_quant_bits = 8;
    return t;
  }
  if (fmt == "w8") return packed_tensor(8, out, in, 0, false);
  if (fmt == "w4g32") return packed_tensor(4, out, in, 32, false);
  if (fmt == "w4g128") return packed_tensor(4, out, in, 128, false);
  if (fmt == "w4g128-asym") return packed_tensor(4, out, in, 128, true);
  auto values = random_values(out * in, 1);
  if (fmt == "f32") return qeval::Tensor::from_f32("w", {out, in}, std::move(values));
  const DType t = fmt == "f16" ? DType::F16 : fmt == "q8_0" ? DType::Q8_0 : fmt == "q4_0" ? DType::Q4_0 : DType::Q4_1;
  const size_t rb = *qeval::row_bytes(t, in);
  std::vector<uint8_t> bytes(rb * static_cast<size_t>(out));
  for (int64_t r = 0; r < out; ++r) qeval::quantize_row(t, values.data() + r * in, bytes.data() + rb * static_cast<size_t>(r), in);
  return qeval::Tensor::from_bytes("w", t, {out, in}, std::move(bytes));
}

void run(benchmark::State& state, const std::string& fmt, int64_t out, int64_t in, int64_t rows) {
  const qeval::Tensor t = make_tensor(fmt, out, in);
  const qeval::Linear L = qeval::make_linear({0, qeval::LinearRole::AttnQ}, t, nullptr, false);
  const auto x = random_values(rows * in, 2);
  std::vector<float> y(static_cast<size_t>(rows * out));
  for (auto _ : state) {
    L.weights->matmul(x.data(), rows, y.data(), pool());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(L.weights->format()));
  const double bytes = static_cast<double>(L.weights->weight_bytes());
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bits/w"] = 8.0 * bytes / static_cast<double>(out * in);
  if (rows > 1)
    state.counters["GFLOP/s"] =
        benchmark::Counter(2e-9 * static_cast<double>(rows * out * in), benchmark::Counter::kIsIterationInvariantRate);
}


struct LoadedModel {
  std::unique_ptr<qeval::Model> model;
  std::unique_ptr<qeval::Engine> engine;
};

LoadedModel& bench_model() {
  static LoadedModel lm = [] {
    LoadedModel m;
    m.model = std::make_unique<qeval::Model>(qeval::quant::load_any_model(std::getenv("QEVAL_BENCH_MODEL")));
    m.engine = std::make_unique<qeval::Engine>(*m.model, qeval::EngineOptions{.threads = bench_threads()});
    return m;
  }();
  return lm;
}

std::vector<qeval::TokenId> prompt_tokens(int64_t n, int64_t vocab) {
  std::vector<qeval::TokenId> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<qeval::TokenId>((7919 * (i + 1)) % vocab);
  return t;
}

// "q4_0/avx512 x154, f32 x1": the kernels of the model's linears.
std::string kernel_summary(const qeval::Engine& e, double* weight_bytes) {
  std::map<std::string, int> count;
  *weight_bytes = 0;
  for (const auto& id : e.linear_ids()) {
    const auto& w = *e.linear(id).weights;
    ++count[std::string(w.format())];
    *weight_bytes += static_cast<double>(w.weight_bytes());
  }
  std::string s;
  for (const auto& [k, n] : count) s += (s.empty() ? "" : ", ") + k + " x" + std::to_string(n);
  return s;
}

void BM_ModelPrefill(benchmark::State& state) {
  qeval::Engine& e = *bench_model().engine;
  const auto prompt = prompt_tokens(512, e.vocab_size());
  qeval::KVCache cache = e.new_cache(512);
  for (auto _ : state) {
    cache.clear();
    benchmark::DoNotOptimize(e.append(cache, prompt).data());
  }
  double wb = 0;
  state.SetLabel(kernel_summary(e, &wb));
  state.counters["tok/s"] = benchmark::Counter(512.0, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ModelDecode(benchmark::State& state) {
  qeval::Engine& e = *bench_model().engine;
  const auto prompt = prompt_tokens(32, e.vocab_size());
  constexpr int kSteps = 64;
  qeval::KVCache cache = e.new_cache(32 + kSteps);
  for (auto _ : state) {
    state.PauseTiming();
    cache.clear();
    auto logits = e.append(cache, prompt);
    state.ResumeTiming();
    for (int s = 0; s < kSteps; ++s) {
      const qeval::TokenId next = static_cast<qeval::TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      logits = e.append(cache, {&next, 1});
    }
  }
  double wb = 0;
  state.SetLabel(kernel_summary(e, &wb));
  state.counters["tok/s"] = benchmark::Counter(kSteps, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_GB_per_tok"] = wb * 1e-9;
  state.counters["eff_GB/s"] = benchmark::Counter(kSteps * wb * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

[[maybe_unused]] const bool registered = [] {
  if (std::getenv("QEVAL_BENCH_MODEL")) {
    benchmark::RegisterBenchmark("BM_ModelPrefill", BM_ModelPrefill)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
    benchmark::RegisterBenchmark("BM_ModelDecode", BM_ModelDecode)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
  }
  for (const char* f : kFormats)
    for (const auto& s : kShapes) {
      const std::string fmt = f;
      const int64_t out = s[0], in = s[1];
      const std::string shape = "/" + std::to_string(out) + "/" + std::to_string(in);
      benchmark::RegisterBenchmark(("BM_Gemv/" + fmt + shape).c_str(),
                                   [=](benchmark::State& st) { run(st, fmt, out, in, 1); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark(("BM_Gemm/" + fmt + shape).c_str(),
                                   [=](benchmark::State& st) { run(st, fmt, out, in, kPrefillRows); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  // Matrices of about 90 MB or more (beyond the 32 MiB L3 of the benchmark machine): the weights
  // stream from DRAM as in decoding, so GB/s shows how close a kernel gets to memory bandwidth.
  for (const char* f : {"f32", "f16", "q8_0", "q4_0", "w8", "w4g32", "w4g128", "w8a8", "w4g32a8", "w4g128a8"}) {
    const std::string fmt = f;
    const int64_t out = fmt == "f32" ? 4096 : fmt == "f16" ? 8192 : 32768;
    benchmark::RegisterBenchmark(("BM_DramGemv/" + fmt + "/" + std::to_string(out) + "/5632").c_str(),
                                 [=](benchmark::State& st) { run(st, fmt, out, 5632, 1); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
  for (const char* f : {"w8a8", "w4g32a8", "w4g128a8"}) {
    const std::string fmt = f;
    benchmark::RegisterBenchmark(("BM_IntGemv/" + fmt + "/2048/5632").c_str(),
                                 [=](benchmark::State& st) { run(st, fmt, 2048, 5632, 1); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    // 16 rows: the most a layer multiplies with integer GEMVs (a short prompt, batched decode).
    benchmark::RegisterBenchmark(("BM_IntRows16/" + fmt + "/2048/5632").c_str(),
                                 [=](benchmark::State& st) { run(st, fmt, 2048, 5632, 16); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
