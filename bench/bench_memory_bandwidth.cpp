// Memory bandwidth of this machine, the denominator of the decode roofline
// (decode tokens/s <= bandwidth / weight bytes per token).
// Reads a buffer much larger than the caches with 1..N threads, like STREAM's "sum" kernel,
// plain (the hardware prefetcher alone) and with software prefetches into L2 a fixed distance
// ahead, as the packed GEMV kernels issue them; the roofline uses the faster of the two.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr size_t kBytes = size_t{1} << 30;  // 1 GiB: far beyond any L3

float* buffer() {
  static float* buf = [] {
    auto* p = static_cast<float*>(std::aligned_alloc(64, kBytes));
    for (size_t i = 0; i < kBytes / sizeof(float); ++i) p[i] = static_cast<float>(i & 1023);
    return p;
  }();
  return buf;
}

// ahead: prefetch distance in floats (0: none).
__attribute__((target("avx2"))) float sum_range(const float* p, size_t n, size_t ahead) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  for (size_t i = 0; i + 32 <= n; i += 32) {
    if (ahead) {
      _mm_prefetch(reinterpret_cast<const char*>(p + i + ahead), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(p + i + ahead + 16), _MM_HINT_T1);
    }
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const size_t ahead = static_cast<size_t>(state.range(1)) / sizeof(float);
  float* p = buffer();
  const size_t n = kBytes / sizeof(float);
  std::vector<float> partial(static_cast<size_t>(threads));
  for (auto _ : state) {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t chunk = n / static_cast<size_t>(threads) / 32 * 32;
        partial[static_cast<size_t>(t)] = sum_range(p + chunk * static_cast<size_t>(t), chunk, ahead);
      });
    }
    for (auto& th : pool) th.join();
    benchmark::DoNotOptimize(partial.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kBytes));
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(kBytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
// Args: threads, prefetch distance in bytes (0 = no software prefetch).
BENCHMARK(BM_ReadBandwidth)->ArgsProduct({{1, 2}, {0, 4096, 16384}})->UseRealTime()->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
