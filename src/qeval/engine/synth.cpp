#include "qeval/engine/synth.h"

#include <cmath>
#include <numbers>

#include "qeval/engine/thread_pool.h"
#include "qeval/util/error.h"

namespace qeval {

ModelConfig synth_preset(std::string_view p) {
  ModelConfig c;
  c.architecture = "llama";
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  if (p == "tinyllama-1.1b") {
    c.vocab_size = 32000, c.hidden_size = 2048, c.n_layers = 22, c.n_heads = 32, c.n_kv_heads = 4, c.ffn_size = 5632;
    c.context_length = 2048;
  } else if (p == "smollm-135m") {
    c.vocab_size = 49152, c.hidden_size = 576, c.n_layers = 30, c.n_heads = 9, c.n_kv_heads = 3, c.ffn_size = 1536;
    c.context_length = 2048;
    c.tied_embeddings = true;
  } else if (p == "stories260k") {
    c.vocab_size = 512, c.hidden_size = 64, c.n_layers = 5, c.n_heads = 8, c.n_kv_heads = 4, c.ffn_size = 172;
    c.context_length = 512;
  } else {
    throw Error("unknown synth preset '" + std::string(p) + "' (expected tinyllama-1.1b, smollm-135m or stories260k)");
  }
  c.head_dim = c.hidden_size / c.n_heads;
  c.rope_dim = c.head_dim;
  return c;
}

std::vector<std::string> synth_presets() { return {"tinyllama-1.1b", "smollm-135m", "stories260k"}; }

GGUFMetadata synth_spm_vocab(int64_t n) {
  if (n < 259) throw Error("a byte-level vocabulary needs at least 259 tokens, not " + std::to_string(n));
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
    scores.push_back(0);
    types.push_back(6);
  }
  const std::string space = "\xE2\x96\x81";  // U+2581
  // Letter strings of length 1, 2, 3, ... in order, each with and without the space marker.
  std::vector<std::string> level = {""};
  while (static_cast<int64_t>(tokens.size()) < n) {
    std::vector<std::string> next;
    for (const auto& s : level)
      for (char ch = 'a'; ch <= 'z'; ++ch) next.push_back(s + ch);
    for (const auto& s : next) {
      for (const std::string& piece : {space + s, s}) {
        if (static_cast<int64_t>(tokens.size()) >= n) break;
        tokens.push_back(piece);
        scores.push_back(-static_cast<float>(tokens.size()));
        types.push_back(1);
      }
      if (static_cast<int64_t>(tokens.size()) >= n) break;
    }
    level = std::move(next);
  }
  GGUFMetadata md;
  md.set("tokenizer.ggml.model", GGUFValue::str("llama"));
  md.set("tokenizer.ggml.tokens", GGUFValue::string_array(tokens));
  md.set("tokenizer.ggml.scores", GGUFValue::f32_array(scores));
  md.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
  md.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(0));
  md.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(1));
  md.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(2));
  md.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(true));
  md.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(false));
  return md;
}

GGUFMetadata tokenizer_metadata_from(const std::string& path) {
  const GGUFFile f = GGUFFile::open(path);
  GGUFMetadata md;
  for (const auto& [k, v] : f.metadata.entries())
    if (k.rfind("tokenizer.", 0) == 0) md.set(k, v);
  if (!md.contains("tokenizer.ggml.tokens")) fail_file(path, "has no tokenizer.ggml.tokens");
  return md;
}

namespace {

uint64_t mix(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001B3ull;
  return h;
}

constexpr int64_t kChunk = 1 << 20;

void fill_normal(float* out, int64_t n, uint64_t stream, float stddev) {
  uint64_t st = stream;
  for (int64_t i = 0; i < n; i += 2) {
    const double u1 = (static_cast<double>(mix(st) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(mix(st) >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
    out[i] = static_cast<float>(r * std::cos(2 * std::numbers::pi * u2));
    if (i + 1 < n) out[i + 1] = static_cast<float>(r * std::sin(2 * std::numbers::pi * u2));
  }
}

}  // namespace

Model synth_model(const ModelConfig& c, uint64_t seed, const GGUFMetadata& vocab, int threads) {
  const auto tokens = vocab.get_string_array("tokenizer.ggml.tokens");
  if (static_cast<int64_t>(tokens.size()) != c.vocab_size)
    throw Error("the vocabulary has " + std::to_string(tokens.size()) + " tokens, the model " + std::to_string(c.vocab_size));
  Model m;
  m.path = "synth";
  m.format = ModelFormat::GGUF;
  m.config = c;
  m.metadata = vocab;
  ThreadPool pool(threads);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n), 1.0f);
    if (!norm) {
      const uint64_t base = name_hash(name) ^ (seed * 0xD1B54A32D192ED03ull);
      const int64_t chunks = (n + kChunk - 1) / kChunk;
      pool.parallel_for(chunks, 1, [&](int64_t b, int64_t e, int) {
        for (int64_t ch = b; ch < e; ++ch)
          fill_normal(v.data() + ch * kChunk, std::min(kChunk, n - ch * kChunk), base + static_cast<uint64_t>(ch) * 0x632BE59BD9B4E019ull, 0.02f);
      });
    }
    m.tensors[name] = Tensor::from_f32(name, std::move(shape), std::move(v));
  };
  const int64_t H = c.hidden_size, qd = c.q_dim(), kd = c.kv_dim(), F = c.ffn_size;
  add("token_embd.weight", {c.vocab_size, H}, false);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {H}, true);
    add(b + "attn_q.weight", {qd, H}, false);
    add(b + "attn_k.weight", {kd, H}, false);
    add(b + "attn_v.weight", {kd, H}, false);
    add(b + "attn_output.weight", {H, qd}, false);
    add(b + "ffn_norm.weight", {H}, true);
    add(b + "ffn_gate.weight", {F, H}, false);
    add(b + "ffn_up.weight", {F, H}, false);
    add(b + "ffn_down.weight", {H, F}, false);
  }
  add("output_norm.weight", {H}, true);
  if (c.tied_embeddings)
    m.tensors["output.weight"] = m.tensors["token_embd.weight"];
  else
    add("output.weight", {c.vocab_size, H}, false);
  return m;
}

}  // namespace qeval
