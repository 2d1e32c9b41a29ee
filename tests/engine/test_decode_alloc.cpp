// The decode loop does not allocate, and decode (GEMV) results do not depend on the thread count.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "kv_test_quantizer.h"
#include "qeval/engine/engine.h"
#include "tiny_model.h"

// GCC cannot see that the replaced operator new below is malloc-based.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) { g_allocs.fetch_add(1, std::memory_order_relaxed); }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// The nothrow form too (std::stable_sort's temporary buffer uses it): every form that ends in
// the replaced operator delete must come from malloc, or a sanitizer's allocator reports an
// alloc-dealloc mismatch.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (g_counting.load(std::memory_order_relaxed)) { g_allocs.fetch_add(1, std::memory_order_relaxed); }
  return std::malloc(n ? n : 1);
}
// Replacing the global allocation functions as a pair (operator delete frees what malloc gave).
void operator delete(void* p) noexcept { std::free(p); }  // NOLINT
void operator delete(void* p, std::size_t) noexcept { std::free(p); }  // NOLINT
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }  // NOLINT

namespace qeval {
namespace {

TEST(Decode, NoHeapAllocationPerToken) {
  ModelConfig c = test::tiny_config("qwen3");
  c.context_length = 64;
  Model m = test::make_tiny_model(c, 3);
  Engine e(m, {.threads = 2});
  KVCache cache = e.new_cache();
  std::vector<TokenId> prompt = {1, 2, 3, 4};
  auto l = e.append(cache, prompt);
  TokenId t = 5;
  l = e.append(cache, {&t, 1});  // warm-up of the one-row path
  g_allocs = 0;
  g_counting = true;
  for (int i = 0; i < 20; ++i) {
    t = static_cast<TokenId>((t * 7 + 3) % 37);
    l = e.append(cache, {&t, 1});
  }
  g_counting = false;
  EXPECT_EQ(g_allocs.load(), 0);
}

// The same with a KV cache stored as 4-bit codes (per-thread dequantization scratch is sized
// once, like the attention scores).
TEST(Decode, NoHeapAllocationPerTokenWithQuantizedCache) {
  ModelConfig c = test::tiny_config("qwen3");
  c.context_length = 64;
  Model m = test::make_tiny_model(c, 3);
  Engine e(m, {.threads = 2});
  e.set_kv_format(test::minmax_format(KvElement::Q4, c.head_dim, 4, false));
  KVCache cache = e.new_cache();
  std::vector<TokenId> prompt = {1, 2, 3, 4};
  auto l = e.append(cache, prompt);
  TokenId t = 5;
  l = e.append(cache, {&t, 1});
  g_allocs = 0;
  g_counting = true;
  for (int i = 0; i < 20; ++i) {
    t = static_cast<TokenId>((t * 7 + 3) % 37);
    l = e.append(cache, {&t, 1});
  }
  g_counting = false;
  EXPECT_EQ(g_allocs.load(), 0);
}

TEST(Decode, ThreadCountDoesNotChangeDecodeLogits) {
  Model m = test::make_tiny_model(test::tiny_config("llama"), 4);
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2, 3}) {
    Engine e(m, {.threads = threads});
    KVCache cache = e.new_cache();
    std::vector<TokenId> prompt = {1, 9, 4};
    e.append(cache, prompt);
    std::vector<float> all;
    TokenId t = 2;
    for (int i = 0; i < 10; ++i) {
      auto l = e.append(cache, {&t, 1});
      all.insert(all.end(), l.begin(), l.end());
      t = static_cast<TokenId>((t * 5 + 1) % 37);
    }
    runs.push_back(all);
  }
  // One row per step: every output is one dot product computed by one thread, so bit-equal.
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_EQ(runs[0], runs[2]);
}

}  // namespace
}  // namespace qeval
