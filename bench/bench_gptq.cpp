// GPTQ on one 4096 x 4096 linear layer with 128 x 512 = 65,536 calibration tokens (the GPTQ /
// AWQ papers' calibration set size). See docs/BENCHMARKS.md for figures; the whole-model time
// (synthetic TinyLlama-1.1B, 32 x 512 tokens) is measured with `qeval quantize` (see there).
//
// Synthetic calibration activations with a realistic, strongly non-isotropic spectrum (LLM
// hidden states are dominated by a few directions and a few outlier channels):
//   x = D (z + U c),  z ~ N(0, I_n),  c ~ N(0, I_r) with r = 32 shared factors,
//   U [n, r] with N(0, 0.25) entries (so the covariance D (I + U U^T) D has 32 eigenvalues about
//   n / 4 times the bulk), D = diag(d), d_j = exp(N(0, 0.5^2)) (log-normal channel scales) and
//   0.5 % of the channels (every 200th) scaled 20x more (the outlier features of LLM.int8()).
// Weights: N(0, 0.02^2). Seeds fixed (std::mt19937_64, seeds 1 and 2): every run sees the same data.
//
// Benchmarks (2 threads unless $QEVAL_BENCH_THREADS; n = $QEVAL_BENCH_GPTQ_DIM, default 4096;
// tokens = $QEVAL_BENCH_GPTQ_TOKENS, default 65536):
//  BM_GptqHessian   HessianAccumulator::add of all tokens in 256-token chunks (double dsyrk);
//                   activation generation is not timed. Counter: tok/s.
//  BM_Gptq/<act>    gptq_quantize(w4g128, damp 0.01, block 128, act-order off/on) given H: dead
//                   columns, dampening, Cholesky inverse (LAPACK), the column loop and lazy block
//                   updates. Counters: layer output error d^T H d of GPTQ relative to RTN on the
//                   same grid (error_vs_rtn < 1 is GPTQ doing its job), computed after timing.
//  BM_Rtn           rtn_quantize(w4g128) of the same weights, for scale.
// Each benchmark runs one iteration (--benchmark_repetitions for more): seconds per layer.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "qeval/quant/awq.h"
#include "qeval/quant/gptq.h"
#include "qeval/quant/rtn.h"
#include "qeval/quant/spec.h"

namespace {

using namespace qeval::quant;

int64_t env_int(const char* name, int64_t fallback) {
  const char* e = std::getenv(name);
  return e ? std::max<int64_t>(1, std::atoll(e)) : fallback;
}
int64_t dim() { return env_int("QEVAL_BENCH_GPTQ_DIM", 4096); }
int64_t tokens() { return env_int("QEVAL_BENCH_GPTQ_TOKENS", 128 * 512); }
constexpr int64_t kChunk = 256;
constexpr int64_t kFactors = 32;

// Generates the activations chunk by chunk (see the top of the file).
class ActivationSource {
 public:
  explicit ActivationSource(int64_t n) : n_(n), rng_(1), scale_(static_cast<size_t>(n)), u_(static_cast<size_t>(n * kFactors)) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t j = 0; j < n; ++j) {
      scale_[static_cast<size_t>(j)] = std::exp(0.5f * nd(rng_)) * (j % 200 == 7 ? 20.0f : 1.0f);
    }
    for (float& v : u_) v = 0.5f * nd(rng_);
  }
  // x: [rows, n]
  void next(std::vector<float>& x, int64_t rows) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    x.resize(static_cast<size_t>(rows * n_));
    c_.resize(static_cast<size_t>(rows * kFactors));
    for (float& v : x) v = nd(rng_);
    for (float& v : c_) v = nd(rng_);
    // x += c U^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(n_), static_cast<int>(kFactors),
                1.0f, c_.data(), static_cast<int>(kFactors), u_.data(), static_cast<int>(kFactors), 1.0f, x.data(),
                static_cast<int>(n_));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n_; ++j) x[static_cast<size_t>(r * n_ + j)] *= scale_[static_cast<size_t>(j)];
  }

 private:
  int64_t n_;
  std::mt19937_64 rng_;
  std::vector<float> scale_, u_, c_;
};

struct Layer {
  int64_t n = 0;
  std::vector<float> w;
  std::vector<double> h;
};

std::vector<float> make_weights(int64_t n) {
  std::mt19937_64 rng(2);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n * n));
  for (float& v : w) v = nd(rng);
  return w;
}

// The layer and its Hessian for the benchmarks that need H: the one BM_GptqHessian accumulated,
// or built here (untimed) when that benchmark did not run first.
std::vector<double>& cached_hessian() {
  static std::vector<double> h;
  return h;
}

const Layer& layer() {
  static const Layer L = [] {
    Layer l;
    l.n = dim();
    l.w = make_weights(l.n);
    if (cached_hessian().empty()) {
      HessianAccumulator acc(l.n);
      ActivationSource src(l.n);
      std::vector<float> x;
      for (int64_t t = 0; t < tokens(); t += kChunk) {
        const int64_t rows = std::min(kChunk, tokens() - t);
        src.next(x, rows);
        acc.add(x, rows);
      }
      cached_hessian() = acc.hessian();
    }
    l.h = std::move(cached_hessian());
    return l;
  }();
  return L;
}

QuantizerConfig w4g128() { return *QuantSpec::parse("w4g128").weights; }

void BM_GptqHessian(benchmark::State& state) {
  const int64_t n = dim();
  for (auto _ : state) {
    state.PauseTiming();
    HessianAccumulator acc(n);
    ActivationSource src(n);
    std::vector<float> x;
    state.ResumeTiming();
    for (int64_t t = 0; t < tokens(); t += kChunk) {
      const int64_t rows = std::min(kChunk, tokens() - t);
      state.PauseTiming();
      src.next(x, rows);
      state.ResumeTiming();
      acc.add(x, rows);
    }
    benchmark::DoNotOptimize(acc.samples());
    state.PauseTiming();
    cached_hessian() = acc.hessian();  // the same data layer() would build
    state.ResumeTiming();
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(tokens()), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["dim"] = static_cast<double>(n);
}

void BM_Gptq(benchmark::State& state) {
  const Layer& L = layer();
  GptqOptions o;
  o.act_order = state.range(0) != 0;
  GptqResult r;
  for (auto _ : state) {
    r = gptq_quantize(w4g128(), L.w, L.n, L.n, L.h, o);
    benchmark::DoNotOptimize(r.quantized.codes.data());
  }
  const double e_gptq = output_error(L.w, r.weights, L.n, L.n, L.h);
  const double e_rtn = output_error(L.w, rtn_quantize(w4g128(), L.w, L.n, L.n).dequantize(), L.n, L.n, L.h);
  state.counters["error_vs_rtn"] = e_gptq / e_rtn;
  state.counters["dim"] = static_cast<double>(L.n);
  state.counters["calib_tokens"] = static_cast<double>(tokens());
}

void BM_Rtn(benchmark::State& state) {
  const int64_t n = dim();
  const std::vector<float> w = make_weights(n);
  for (auto _ : state) benchmark::DoNotOptimize(rtn_quantize(w4g128(), w, n, n).codes.data());
}

void set_threads() {
  const int t = static_cast<int>(env_int("QEVAL_BENCH_THREADS", 2));
  openblas_set_num_threads(t);
}

BENCHMARK(BM_GptqHessian)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);
BENCHMARK(BM_Gptq)->ArgName("actorder")->Arg(0)->Arg(1)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);
BENCHMARK(BM_Rtn)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

}  // namespace

int main(int argc, char** argv) {
  set_threads();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
