// KV caches stored as 8- / 4-bit codes: layout and byte counts, contents kept by reserve /
// truncate / clear, attention over the codes equal to attention over the dequantized floats, and
// whole-engine results equal to the simulated path (quantize-dequantize into a float cache).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "kv_test_quantizer.h"
#include "test_support.h"
#include "qeval/engine/engine.h"
#include "qeval/engine/kv_attention.h"
#include "qeval/engine/thread_pool.h"
#include "qeval/util/error.h"
#include "tiny_model.h"

namespace qeval {
namespace {

using test::minmax_format;

std::vector<float> randn(size_t n, uint32_t seed) { return test::random_normal(n, seed); }

// Every position of every plane, read back head by head: [layer][k|v][pos][kv_dim].
std::vector<float> read_all(const KVCache& c, int64_t head_dim) {
  std::vector<float> out;
  std::vector<float> row(static_cast<size_t>(head_dim));
  for (int64_t l = 0; l < c.n_layers(); ++l)
    for (bool value : {false, true})
      for (int64_t t = 0; t < c.size(); ++t)
        for (int64_t h = 0; h < c.kv_dim() / head_dim; ++h) {
          c.read_head(l, value, h, t, t + 1, row.data());
          out.insert(out.end(), row.begin(), row.end());
        }
  return out;
}

TEST(KvCacheStorage, BytesPerFormat) {
  // 2 layers, 2 heads of 64: per position 2 layers x (K, V) x 2 heads.
  const int64_t layers = 2, hd = 64, kvd = 128, per_pos_heads = 2 * 2 * 2;
  const KVCache f32(layers, kvd, 10);
  EXPECT_EQ(f32.bytes_per_position(), per_pos_heads * hd * 4);  // 2048
  EXPECT_EQ(f32.bytes(7), 7 * 2048);
  struct Case {
    KvElement e;
    int64_t group;
    bool sym;
    int64_t per_head;  // bytes per head per position
  };
  const Case cases[] = {
      {KvElement::Q4, 0, false, 32 + 4 + 1},      // codes, one float scale, one uint8 zero
      {KvElement::Q4, 0, true, 32 + 4},           // symmetric: the zero is implicit
      {KvElement::Q8, 0, false, 64 + 4 + 1},
      {KvElement::Q4, 32, false, 32 + 2 * 5},     // two groups per head
      {KvElement::Q4, 32, true, 32 + 2 * 4},
      {KvElement::Q8, 16, true, 64 + 4 * 4},
      {KvElement::Q4, 128, false, 32 + 4 + 1},    // a group larger than the head: one per head
  };
  for (const Case& c : cases) {
    const KVCache q(layers, kvd, 10, minmax_format(c.e, hd, c.group, c.sym));
    EXPECT_EQ(q.bytes_per_position(), per_pos_heads * c.per_head) << q.format().name();
    EXPECT_EQ(q.bytes(5), 5 * per_pos_heads * c.per_head) << q.format().name();
    EXPECT_LE(q.bytes_per_position() * 3, f32.bytes_per_position()) << q.format().name();
  }
  EXPECT_EQ(minmax_format(KvElement::Q4, 64, 0, false).name(), "q4 asym per token+head");
  EXPECT_EQ(minmax_format(KvElement::Q8, 64, 32, true).name(), "q8 sym g32");
}

TEST(KvCacheStorage, RejectsBadFormats) {
  KvFormat no_quantizer;
  no_quantizer.element = KvElement::Q4;
  no_quantizer.head_dim = 8;
  EXPECT_THROW(KVCache(1, 16, 4, no_quantizer), Error);
  EXPECT_THROW(KVCache(1, 20, 4, minmax_format(KvElement::Q4, 8, 0, false)), Error);  // 8 does not divide 20
  Model m = test::make_tiny_model(test::tiny_config("qwen3"), 1);
  Engine e(m, {.threads = 1});
  // 2 layers x (K, V) x 2 KV heads of 8 per position.
  EXPECT_EQ(e.kv_cache_bytes(10), 10 * 2 * 2 * 2 * 8 * 4);
  EXPECT_THROW(e.set_kv_format(minmax_format(KvElement::Q4, 4, 0, false)), Error);  // head_dim is 8
  EXPECT_NO_THROW(e.set_kv_format(minmax_format(KvElement::Q4, 8, 0, false)));
  EXPECT_EQ(e.new_cache(4).format().name(), "q4 asym per token+head");
  EXPECT_EQ(e.new_cache(4).k(0), nullptr);  // no float rows
  EXPECT_EQ(e.kv_cache_bytes(10), 10 * 2 * 2 * 2 * (4 + 4 + 1));  // 4 code bytes, scale, zero per head
}

TEST(KvCacheStorage, StoresWhatTheQuantizerChoseAndKeepsItThroughReserveTruncateClear) {
  const int64_t layers = 2, hd = 10, kvd = 30;  // odd group tails and nibbles split across heads
  for (KvElement el : {KvElement::Q8, KvElement::Q4})
    for (int64_t g : {0, 4, 3})
      for (bool sym : {false, true}) {
        const KvFormat f = minmax_format(el, hd, g, sym);
        KVCache c(layers, kvd, 3, f);
        const int64_t n = 7;
        auto k = randn(static_cast<size_t>(layers * n * kvd), 11), v = randn(static_cast<size_t>(layers * n * kvd), 12);
        c.reserve(3);
        for (int64_t l = 0; l < layers; ++l) c.write(l, 0, k.data() + l * n * kvd, v.data() + l * n * kvd, 3);
        c.set_size(3);
        c.reserve(n);  // grows, keeping the first 3 positions
        EXPECT_EQ(c.capacity(), n);
        for (int64_t l = 0; l < layers; ++l)
          c.write(l, 3, k.data() + (l * n + 3) * kvd, v.data() + (l * n + 3) * kvd, n - 3);
        c.set_size(n);
        // Expected: the same rows quantize-dequantized group by group.
        auto kq = k, vq = v;
        test::fake_quantize_rows(f, kq.data(), layers * n, kvd);
        test::fake_quantize_rows(f, vq.data(), layers * n, kvd);
        std::vector<float> expect;
        for (int64_t l = 0; l < layers; ++l)
          for (const auto* src : {&kq, &vq}) expect.insert(expect.end(), src->begin() + l * n * kvd, src->begin() + (l + 1) * n * kvd);
        const auto got = read_all(c, hd);
        ASSERT_EQ(got, expect) << f.name();
        EXPECT_NE(got, [&] {
          std::vector<float> raw;
          for (int64_t l = 0; l < layers; ++l)
            for (const auto* src : {&k, &v}) raw.insert(raw.end(), src->begin() + l * n * kvd, src->begin() + (l + 1) * n * kvd);
          return raw;
        }()) << "codes must be coarser than floats";
        // Truncate, then overwrite position 4 onwards with other rows: 0..3 are unchanged.
        c.truncate(4);
        auto k2 = randn(static_cast<size_t>(kvd), 13), v2 = randn(static_cast<size_t>(kvd), 14);
        c.write(0, 4, k2.data(), v2.data(), 1);
        c.write(1, 4, k2.data(), v2.data(), 1);
        c.set_size(5);
        std::vector<float> head(static_cast<size_t>(hd));
        for (int64_t t = 0; t < 4; ++t) {
          c.read_head(1, true, 2, t, t + 1, head.data());
          EXPECT_TRUE(std::equal(head.begin(), head.end(), vq.begin() + (n + t) * kvd + 2 * hd)) << f.name() << " t" << t;
        }
        auto k2q = k2;
        test::fake_quantize_rows(f, k2q.data(), 1, kvd);
        c.read_head(0, false, 1, 4, 5, head.data());
        EXPECT_TRUE(std::equal(head.begin(), head.end(), k2q.begin() + hd)) << f.name();
        EXPECT_THROW(c.truncate(6), Error);
        c.clear();
        EXPECT_EQ(c.size(), 0);
        EXPECT_EQ(c.capacity(), n);
        c.reserve(2);  // never shrinks
        EXPECT_EQ(c.capacity(), n);
      }
}

// attention_over_cache on codes == ops::attention over a float cache holding the dequantized rows.
TEST(KvCacheStorage, AttentionOverCodesEqualsAttentionOverDequantizedFloats) {
  for (int64_t hd : {8, 64})
    for (int64_t window : {0, 5})
      for (int threads : {1, 3}) {
        ThreadPool pool(threads);
        const ops::AttentionShape s{4, 2, hd, window, 0.0f};
        const int64_t kvd = s.n_kv_heads * hd, qd = s.n_heads * hd, len = 13, pos0 = 6, n_q = len - pos0;
        const KvFormat f = minmax_format(KvElement::Q4, hd, hd / 2, false);
        auto k = randn(static_cast<size_t>(len * kvd), 21), v = randn(static_cast<size_t>(len * kvd), 22);
        auto q = randn(static_cast<size_t>(n_q * qd), 23);
        KVCache codes(1, kvd, len, f);
        codes.write(0, 0, k.data(), v.data(), len);
        test::fake_quantize_rows(f, k.data(), len, kvd);
        test::fake_quantize_rows(f, v.data(), len, kvd);
        std::vector<float> scores(static_cast<size_t>(threads * len)), scratch(static_cast<size_t>(threads * kv_attention_scratch(s, len)));
        std::vector<float> want(static_cast<size_t>(n_q * qd)), got(want.size(), -1.0f);
        ops::attention(s, q.data(), qd, n_q, pos0, k.data(), v.data(), kvd, want.data(), qd, scores.data(), len, &pool);
        attention_over_cache(s, q.data(), qd, n_q, pos0, codes, 0, got.data(), qd, scores.data(), len, scratch.data(),
                             kv_attention_scratch(s, len), &pool);
        EXPECT_EQ(got, want) << "hd " << hd << " window " << window << " threads " << threads;
      }
}

// The whole engine: a stored cache gives the logits of the simulated path, bit for bit, for a
// prefill (scratch caches) and for token-by-token decoding (new_cache + append).
class KvStoredArch : public ::testing::TestWithParam<std::string> {};

TEST_P(KvStoredArch, LogitsEqualSimulatedQuantization) {
  const ModelConfig cfg = test::tiny_config(GetParam());
  Model m = test::make_tiny_model(cfg, 7);
  const int64_t hd = cfg.head_dim;
  const std::vector<TokenId> toks = {1, 5, 9, 2, 30, 7, 7, 12, 3, 21, 4, 8};
  for (const KvFormat& f : {minmax_format(KvElement::Q8, hd, 0, false), minmax_format(KvElement::Q4, hd, 0, false),
                            minmax_format(KvElement::Q4, hd, 0, true), minmax_format(KvElement::Q4, hd, hd / 2, false)}) {
    Engine e(m, {.threads = 2});
    test::FakeKvHooks hooks(f);
    e.set_hooks(&hooks);
    const auto sim_prefill = e.logits(toks);
    std::vector<float> sim_decode;
    {
      KVCache c = e.new_cache();
      for (TokenId t : toks) {
        auto l = e.append(c, {&t, 1});
        sim_decode.insert(sim_decode.end(), l.begin(), l.end());
      }
    }
    e.set_hooks(nullptr);
    const auto fp32 = e.logits(toks);
    e.set_kv_format(f);
    const auto stored_prefill = e.logits(toks);
    std::vector<float> stored_decode;
    KVCache c = e.new_cache();
    ASSERT_TRUE(c.format().quantized());
    for (TokenId t : toks) {
      auto l = e.append(c, {&t, 1});
      stored_decode.insert(stored_decode.end(), l.begin(), l.end());
    }
    EXPECT_EQ(stored_prefill, sim_prefill) << GetParam() << " " << f.name();
    EXPECT_EQ(stored_decode, sim_decode) << GetParam() << " " << f.name();
    EXPECT_NE(stored_prefill, fp32) << "the format quantizes";
    // Sequences split over rounds (5 rows each) continue from their stored scratch cache.
    Engine small(m, {.threads = 2, .max_batch_tokens = 5});
    small.set_hooks(&hooks);
    const auto sim_split = small.logits(toks);
    small.set_hooks(nullptr);
    small.set_kv_format(f);
    EXPECT_EQ(small.logits(toks), sim_split) << GetParam() << " " << f.name();
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, KvStoredArch, ::testing::Values("llama", "llama3", "mistral", "qwen2", "qwen3", "gpt2"));

}  // namespace
}  // namespace qeval
