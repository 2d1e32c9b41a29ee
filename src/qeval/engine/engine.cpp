#include "qeval/engine/engine.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "qeval/engine/kv_attention.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"

namespace qeval {

struct Engine::Layer {
  std::vector<float> attn_norm_w, attn_norm_b, ffn_norm_w, ffn_norm_b;
  std::vector<float> q_norm, k_norm;  // qwen3
  Linear q, k, v, o, gate, up, down;
};

struct Engine::Workspace {
  int64_t rows = 0, max_len = 0;
  std::vector<float> x, h, q, k, v, att, fa, fb;
  std::vector<float> lin_in;        // linear input copy (hooks / activation rounding)
  std::vector<float> rope_cos, rope_sin;
  std::vector<float> scores;        // threads x max_len
  std::vector<float> kv_deq;        // threads x kv_deq_stride: dequantized KV heads (quantized caches)
  int64_t kv_deq_stride = 0;
  std::vector<float> logits_in, logits;  // logits_chunk x hidden, logits_chunk x vocab
  std::vector<float> last_logits;   // vocab
  std::vector<float> batch_logits;  // sequences x vocab (append_batch)
  std::vector<size_t> batch_done;   // tokens appended so far per sequence (append_batch)
  std::vector<Segment> batch_segs;  // one round of append_batch
  std::vector<int64_t> pos;
  std::vector<std::pair<size_t, int64_t>> logit_rows;  // (segment, index) per logits row
  std::vector<int64_t> logit_src;   // row of x per logits row
};

namespace {

// Direct map look-ups (Model's helpers live in io/model.cpp; the engine needs only the map).
const Tensor* find_tensor(const Model& m, const std::string& name) {
  auto it = m.tensors.find(name);
  return it == m.tensors.end() ? nullptr : &it->second;
}

const Tensor& require_tensor(const Model& m, const std::string& name) {
  const Tensor* t = find_tensor(m, name);
  if (!t) fail_file(m.path, "missing tensor " + name);
  return *t;
}

std::string blk(int64_t layer, const char* suffix) { return "blk." + std::to_string(layer) + "." + suffix; }

std::vector<float> vec_of(const Model& m, const std::string& name, int64_t expect, bool required) {
  const Tensor* t = find_tensor(m, name);
  if (!t) {
    if (required) fail_file(m.path, "missing tensor " + name);
    return {};
  }
  if (expect > 0 && t->numel() != expect)
    fail_file(m.path, name + " has " + std::to_string(t->numel()) + " values, expected " + std::to_string(expect));
  return t->to_f32();
}

const Tensor& mat_of(const Model& m, const std::string& name, int64_t out, int64_t in) {
  const Tensor* t = find_tensor(m, name);
  if (!t) fail_file(m.path, "missing tensor " + name);
  if (t->shape.size() != 2 || t->shape[0] != out || t->shape[1] != in)
    fail_file(m.path, name + " has shape " + shape_string(t->shape) + ", expected [" + std::to_string(out) + ", " +
                          std::to_string(in) + "]");
  return *t;
}

Linear load_linear(const Model& m, int layer, LinearRole role, int64_t out, int64_t in, bool bias, bool compat) {
  LinearId id{layer, role};
  const std::string base = id.name();
  const Tensor& w = mat_of(m, base + ".weight", out, in);
  const Tensor* b = bias ? find_tensor(m, base + ".bias") : nullptr;
  if (bias && !b) fail_file(m.path, "missing tensor " + base + ".bias");
  return make_linear(id, w, b, compat);
}

void check_shape(const Linear& L, int64_t out, int64_t in) {
  if (L.out_features() != out || L.in_features() != in)
    throw Error(L.id.name() + ": weights of shape [" + std::to_string(out) + ", " + std::to_string(in) +
                "] do not fit the layer's [" + std::to_string(L.out_features()) + ", " + std::to_string(L.in_features()) + "]");
}

}  // namespace

double ScoreResult::sum() const {
  double s = 0;
  for (double v : logprobs) s += v;
  return s;
}

bool ScoreResult::all_greedy() const {
  return std::all_of(greedy.begin(), greedy.end(), [](uint8_t g) { return g != 0; });
}

Engine::Engine(const Model& model, EngineOptions options) : cfg_(model.config), opts_(options) {
  ModelConfig& c = cfg_;
  if (c.hidden_size <= 0 || c.n_layers <= 0 || c.n_heads <= 0)
    fail_file(model.path, "model config lacks hidden_size / n_layers / n_heads");
  if (c.n_kv_heads <= 0) c.n_kv_heads = c.n_heads;
  if (c.head_dim <= 0) c.head_dim = c.hidden_size / c.n_heads;
  if (c.rope_dim <= 0) c.rope_dim = c.head_dim;
  if (c.n_heads % c.n_kv_heads != 0)
    fail_file(model.path, std::to_string(c.n_heads) + " heads are not a multiple of " + std::to_string(c.n_kv_heads) + " KV heads");
  if (c.position == PositionKind::Rope && (c.rope_dim % 2 != 0 || c.rope_dim > c.head_dim))
    fail_file(model.path, "rope dimension " + std::to_string(c.rope_dim) + " does not fit head_dim " + std::to_string(c.head_dim));

  const int64_t H = c.hidden_size, qd = c.q_dim(), kd = c.kv_dim(), F = c.ffn_size;
  tok_embd_ = require_tensor(model, "token_embd.weight");
  if (tok_embd_.shape.size() != 2 || tok_embd_.cols() != H)
    fail_file(model.path, "token_embd.weight has shape " + shape_string(tok_embd_.shape) + ", expected [vocab, " + std::to_string(H) + "]");
  vocab_ = tok_embd_.rows();
  if (c.position == PositionKind::Learned) {
    pos_embd_ = require_tensor(model, "position_embd.weight");
    if (pos_embd_.cols() != H) fail_file(model.path, "position_embd.weight has shape " + shape_string(pos_embd_.shape));
  }
  n_ctx_ = opts_.context_length > 0 ? opts_.context_length : (c.context_length > 0 ? c.context_length : 2048);
  if (c.position == PositionKind::Learned) n_ctx_ = std::min(n_ctx_, pos_embd_.rows());

  const bool ln = c.norm == NormKind::LayerNorm;
  const bool compat = opts_.ggml_compat;
  layers_.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    const int li = static_cast<int>(l);
    L.attn_norm_w = vec_of(model, blk(l, "attn_norm.weight"), H, true);
    L.ffn_norm_w = vec_of(model, blk(l, "ffn_norm.weight"), H, true);
    if (ln) {
      L.attn_norm_b = vec_of(model, blk(l, "attn_norm.bias"), H, false);
      L.ffn_norm_b = vec_of(model, blk(l, "ffn_norm.bias"), H, false);
    }
    if (c.qk_norm) {
      L.q_norm = vec_of(model, blk(l, "attn_q_norm.weight"), c.head_dim, true);
      L.k_norm = vec_of(model, blk(l, "attn_k_norm.weight"), c.head_dim, true);
    }
    L.q = load_linear(model, li, LinearRole::AttnQ, qd, H, c.qkv_bias, compat);
    L.k = load_linear(model, li, LinearRole::AttnK, kd, H, c.qkv_bias, compat);
    L.v = load_linear(model, li, LinearRole::AttnV, kd, H, c.qkv_bias, compat);
    L.o = load_linear(model, li, LinearRole::AttnOutput, H, qd, c.attn_out_bias, compat);
    if (c.gated_ffn) L.gate = load_linear(model, li, LinearRole::FfnGate, F, H, c.ffn_bias, compat);
    L.up = load_linear(model, li, LinearRole::FfnUp, F, H, c.ffn_bias, compat);
    L.down = load_linear(model, li, LinearRole::FfnDown, H, F, c.ffn_bias, compat);
  }
  out_norm_w_ = vec_of(model, "output_norm.weight", H, true);
  if (ln) out_norm_b_ = vec_of(model, "output_norm.bias", H, false);
  const Tensor* out = find_tensor(model, "output.weight");
  if (!out) out = &tok_embd_;
  if (out->shape.size() != 2 || out->shape[1] != H)
    fail_file(model.path, "output.weight has shape " + shape_string(out->shape));
  output_ = std::make_unique<Linear>(make_linear(LinearId::output(), *out, find_tensor(model, "output.bias"), compat));
  vocab_ = output_->out_features();
  if (c.position == PositionKind::Rope) rope_ = ops::make_rope_table(c);
  if (const Tensor* ff = find_tensor(model, "rope_freqs.weight"); ff && c.position == PositionKind::Rope) {
    if (ff->numel() != c.rope_dim / 2) fail_file(model.path, "rope_freqs.weight has " + std::to_string(ff->numel()) + " values");
    rope_.freq_factors = ff->to_f32();
  }
  ws_ = std::make_unique<Workspace>();
  pool_ = std::make_unique<ThreadPool>(opts_.threads);
  openblas_set_num_threads(pool_->size());
}

Engine::~Engine() = default;

void Engine::set_threads(int n) {
  pool_ = std::make_unique<ThreadPool>(n);
  opts_.threads = pool_->size();
  openblas_set_num_threads(pool_->size());
  ws_->max_len = 0;  // rescale per-thread scratch
}

std::vector<LinearId> Engine::linear_ids() const {
  std::vector<LinearId> ids;
  for (int l = 0; l < static_cast<int>(layers_.size()); ++l) {
    ids.push_back({l, LinearRole::AttnQ});
    ids.push_back({l, LinearRole::AttnK});
    ids.push_back({l, LinearRole::AttnV});
    ids.push_back({l, LinearRole::AttnOutput});
    if (cfg_.gated_ffn) ids.push_back({l, LinearRole::FfnGate});
    ids.push_back({l, LinearRole::FfnUp});
    ids.push_back({l, LinearRole::FfnDown});
  }
  ids.push_back(LinearId::output());
  return ids;
}

std::vector<float>& Engine::norm_weight(int layer, NormSite site) {
  if (layer < 0 || layer >= static_cast<int>(layers_.size())) throw Error("no layer " + std::to_string(layer));
  Layer& L = layers_[static_cast<size_t>(layer)];
  return site == NormSite::Attn ? L.attn_norm_w : L.ffn_norm_w;
}

std::vector<float>& Engine::norm_bias(int layer, NormSite site) {
  if (layer < 0 || layer >= static_cast<int>(layers_.size())) throw Error("no layer " + std::to_string(layer));
  Layer& L = layers_[static_cast<size_t>(layer)];
  return site == NormSite::Attn ? L.attn_norm_b : L.ffn_norm_b;
}

std::vector<float>& Engine::linear_bias(const LinearId& id) { return linear_mut(id).bias; }

Linear& Engine::linear_mut(const LinearId& id) {
  if (id.role == LinearRole::Output) return *output_;
  if (id.layer < 0 || id.layer >= static_cast<int>(layers_.size())) throw Error("no linear layer " + id.name());
  Layer& L = layers_[static_cast<size_t>(id.layer)];
  switch (id.role) {
    case LinearRole::AttnQ: return L.q;
    case LinearRole::AttnK: return L.k;
    case LinearRole::AttnV: return L.v;
    case LinearRole::AttnOutput: return L.o;
    case LinearRole::FfnGate:
      if (!cfg_.gated_ffn) throw Error("no linear layer " + id.name() + " (the FFN is not gated)");
      return L.gate;
    case LinearRole::FfnUp: return L.up;
    case LinearRole::FfnDown: return L.down;
    case LinearRole::Output: break;
  }
  return *output_;
}

const Linear& Engine::linear(const LinearId& id) const { return const_cast<Engine*>(this)->linear_mut(id); }

void Engine::set_linear_weights(const LinearId& id, const Tensor& weight) {
  Linear& L = linear_mut(id);
  if (weight.shape.size() != 2) throw Error(id.name() + ": replacement weights must be a matrix");
  check_shape(L, weight.shape[0], weight.shape[1]);
  Linear next = make_linear(id, weight, nullptr, opts_.ggml_compat);
  next.bias = std::move(L.bias);
  L = std::move(next);
}

void Engine::set_linear_weights(const LinearId& id, std::vector<float> values) {
  Linear& L = linear_mut(id);
  const int64_t out = L.out_features(), in = L.in_features();
  if (static_cast<int64_t>(values.size()) != out * in)
    throw Error(id.name() + ": " + std::to_string(values.size()) + " replacement values for shape [" + std::to_string(out) + ", " + std::to_string(in) + "]");
  set_linear_weights(id, std::make_unique<DenseF32Weights>(std::move(values), out, in));
}

void Engine::set_linear_weights(const LinearId& id, std::unique_ptr<LinearWeights> weights) {
  Linear& L = linear_mut(id);
  check_shape(L, weights->out_features(), weights->in_features());
  L.weights = std::move(weights);
  L.source_type = DType::F32;
  L.rounding = ActRounding::None;
}

void Engine::check_tokens(std::span<const TokenId> tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_)
      throw Error("invalid token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                  " (vocabulary has " + std::to_string(vocab_) + " tokens)");
}

void Engine::set_kv_format(KvFormat format) {
  if (format.quantized() && format.head_dim != cfg_.head_dim)
    throw Error("KV cache format " + format.name() + ": head_dim " + std::to_string(format.head_dim) +
                " is not the model's " + std::to_string(cfg_.head_dim));
  format.head_dim = cfg_.head_dim;
  KVCache(cfg_.n_layers, cfg_.kv_dim(), 0, format);  // validates
  kv_format_ = std::move(format);
  scratch_caches_.clear();  // recreated in the new format
}

int64_t Engine::kv_cache_bytes(int64_t positions) const {
  return KVCache(cfg_.n_layers, cfg_.kv_dim(), 0, kv_format_).bytes(positions);
}

KVCache Engine::new_cache(int64_t capacity) const {
  return KVCache(cfg_.n_layers, cfg_.kv_dim(), capacity > 0 ? capacity : n_ctx_, kv_format_);
}

void Engine::ensure_workspace(int64_t rows, int64_t max_len) {
  Workspace& w = *ws_;
  auto grow = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  };
  if (rows > w.rows) {
    const int64_t H = cfg_.hidden_size, qd = cfg_.q_dim(), kd = cfg_.kv_dim(), F = cfg_.ffn_size;
    const int64_t max_in = std::max({H, qd, F});
    grow(w.x, rows * H);
    grow(w.h, rows * std::max(H, qd));
    grow(w.q, rows * qd);
    grow(w.k, rows * kd);
    grow(w.v, rows * kd);
    grow(w.att, rows * qd);
    grow(w.fa, rows * F);
    grow(w.fb, rows * F);
    grow(w.lin_in, rows * max_in);
    grow(w.rope_cos, rows * std::max<int64_t>(1, rope_.half));
    grow(w.rope_sin, rows * std::max<int64_t>(1, rope_.half));
    w.pos.resize(static_cast<size_t>(rows));
    w.logit_rows.reserve(static_cast<size_t>(rows));
    w.logit_src.reserve(static_cast<size_t>(rows));
    w.rows = rows;
  }
  if (w.logits.empty()) {
    grow(w.logits_in, opts_.logits_chunk * cfg_.hidden_size);
    grow(w.logits, opts_.logits_chunk * vocab_);
    grow(w.last_logits, vocab_);
  }
  if (max_len > w.max_len) {
    w.scores.assign(static_cast<size_t>(max_len * pool_->size()), 0.0f);
    w.max_len = max_len;
  }
}

void Engine::run_linear(const Linear& L, const float* x, int64_t rows, float* y) {
  const int64_t in = L.in_features(), out = L.out_features();
  Workspace& w = *ws_;
  const float* src = x;
  const bool round = opts_.ggml_compat && L.rounding != ActRounding::None;
  if (hooks_ || round) {
    std::memcpy(w.lin_in.data(), x, static_cast<size_t>(rows * in) * sizeof(float));
    src = w.lin_in.data();
    if (hooks_) hooks_->linear_input(L.id, w.lin_in.data(), rows, in);
    if (round)
      for (int64_t r = 0; r < rows; ++r) round_activation(L.rounding, w.lin_in.data() + r * in, in);
  }
  L.weights->matmul(src, rows, y, *pool_);
  if (!L.bias.empty())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) y[r * out + o] += L.bias[static_cast<size_t>(o)];
  if (hooks_) hooks_->linear_output(L.id, y, rows, out);
}

void Engine::forward(std::span<Segment> segs, Sink& sink) {
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden_size, qd = c.q_dim(), kd = c.kv_dim(), F = c.ffn_size, hd = c.head_dim;
  int64_t rows = 0, max_len = 0;
  bool any_quantized = false;
  for (const Segment& s : segs) {
    check_tokens({s.tokens, static_cast<size_t>(s.n)});
    if (s.cache->size() != s.pos0) throw Error("internal: KV cache position mismatch");
    if (s.pos0 + s.n > s.cache->capacity())
      throw Error("context full: " + std::to_string(s.pos0 + s.n) + " positions do not fit the KV cache of " +
                  std::to_string(s.cache->capacity()));
    if (c.position == PositionKind::Learned && s.pos0 + s.n > pos_embd_.rows())
      throw Error("sequence of " + std::to_string(s.pos0 + s.n) + " tokens exceeds the model's " +
                  std::to_string(pos_embd_.rows()) + " learned positions");
    if (s.cache->format().quantized() && s.cache->format().head_dim != hd)
      throw Error("KV cache format " + s.cache->format().name() + " has head_dim " +
                  std::to_string(s.cache->format().head_dim) + ", the model " + std::to_string(hd));
    any_quantized = any_quantized || s.cache->format().quantized();
    rows += s.n;
    max_len = std::max(max_len, s.cache->capacity());  // attention scratch sized once per cache size
  }
  if (rows == 0) return;
  ensure_workspace(rows, max_len);
  Workspace& w = *ws_;
  float* X = w.x.data();
  float* Hb = w.h.data();

  // Embeddings and positions.
  {
    int64_t r = 0;
    std::vector<float>& tmp = w.logits_in;  // H floats of scratch
    for (const Segment& s : segs)
      for (int64_t i = 0; i < s.n; ++i, ++r) {
        w.pos[static_cast<size_t>(r)] = s.pos0 + i;
        tok_embd_.row_to_f32(s.tokens[i], X + r * H);
        if (c.position == PositionKind::Learned) {
          pos_embd_.row_to_f32(s.pos0 + i, tmp.data());
          for (int64_t j = 0; j < H; ++j) X[r * H + j] += tmp[static_cast<size_t>(j)];
        }
      }
  }
  if (block_pass_) std::memcpy(X, block_pass_->hidden, static_cast<size_t>(rows * H) * sizeof(float));
  const int64_t half = rope_.half;
  if (c.position == PositionKind::Rope)
    for (int64_t r = 0; r < rows; ++r)
      rope_.cos_sin(w.pos[static_cast<size_t>(r)], w.rope_cos.data() + r * half, w.rope_sin.data() + r * half);

  const bool ln = c.norm == NormKind::LayerNorm;
  auto norm_rows = [&](const float* in, const std::vector<float>& wgt, const std::vector<float>& bias, float* out) {
    pool_->parallel_for(rows, 16, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r) {
        if (ln)
          ops::layernorm(in + r * H, wgt.data(), bias.empty() ? nullptr : bias.data(), out + r * H, H, c.norm_eps);
        else
          ops::rmsnorm(in + r * H, wgt.data(), out + r * H, H, c.norm_eps);
      }
    });
  };
  ops::AttentionShape ash{c.n_heads, c.n_kv_heads, hd, c.sliding_window, 0.0f};
  if (any_quantized && (kv_attention_scratch(ash, max_len) > w.kv_deq_stride ||
                        static_cast<int64_t>(w.kv_deq.size()) < w.kv_deq_stride * pool_->size())) {
    w.kv_deq_stride = std::max(w.kv_deq_stride, kv_attention_scratch(ash, max_len));
    w.kv_deq.assign(static_cast<size_t>(w.kv_deq_stride * pool_->size()), 0.0f);
  }

  for (size_t l = 0; l < layers_.size(); ++l) {
    if (block_pass_ && static_cast<int>(l) != block_pass_->layer) continue;
    const Layer& L = layers_[l];
    float* Q = w.q.data();
    float* K = w.k.data();
    float* V = w.v.data();
    norm_rows(X, L.attn_norm_w, L.attn_norm_b, Hb);
    run_linear(L.q, Hb, rows, Q);
    run_linear(L.k, Hb, rows, K);
    run_linear(L.v, Hb, rows, V);
    if (c.qk_norm)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t h = 0; h < c.n_heads; ++h) ops::rmsnorm(Q + r * qd + h * hd, L.q_norm.data(), Q + r * qd + h * hd, hd, c.norm_eps);
        for (int64_t h = 0; h < c.n_kv_heads; ++h) ops::rmsnorm(K + r * kd + h * hd, L.k_norm.data(), K + r * kd + h * hd, hd, c.norm_eps);
      }
    if (c.position == PositionKind::Rope)
      for (int64_t r = 0; r < rows; ++r) {
        ops::rope_apply(Q + r * qd, c.n_heads, hd, c.rope_dim, w.rope_cos.data() + r * half, w.rope_sin.data() + r * half);
        ops::rope_apply(K + r * kd, c.n_kv_heads, hd, c.rope_dim, w.rope_cos.data() + r * half, w.rope_sin.data() + r * half);
      }
    if (opts_.kv_f16) {
      for (int64_t i = 0; i < rows * kd; ++i) {
        K[i] = fp16_to_f32(f32_to_fp16(K[i]));
        V[i] = fp16_to_f32(f32_to_fp16(V[i]));
      }
      for (int64_t i = 0; i < rows * qd; ++i) Q[i] = fp16_to_f32(f32_to_fp16(Q[i]));
    }
    if (hooks_) hooks_->kv(static_cast<int>(l), K, V, rows, kd);
    // Write the new positions to each sequence's cache, then attend over the cache.
    {
      int64_t r = 0;
      for (Segment& s : segs) {
        // A quantized cache stores codes; attention then reads them back dequantized, per KV head.
        s.cache->write(static_cast<int64_t>(l), s.pos0, K + r * kd, V + r * kd, s.n);
        attention_over_cache(ash, Q + r * qd, qd, s.n, s.pos0, *s.cache, static_cast<int64_t>(l), w.att.data() + r * qd,
                             qd, w.scores.data(), w.max_len, w.kv_deq.data(), w.kv_deq_stride, pool_.get());
        r += s.n;
      }
    }
    run_linear(L.o, w.att.data(), rows, Hb);
    for (int64_t i = 0; i < rows * H; ++i) X[i] += Hb[i];

    norm_rows(X, L.ffn_norm_w, L.ffn_norm_b, Hb);
    float* A = w.fa.data();
    if (c.gated_ffn) {
      float* B = w.fb.data();
      run_linear(L.gate, Hb, rows, A);
      run_linear(L.up, Hb, rows, B);
      pool_->parallel_for(rows, 4, [&](int64_t b, int64_t e, int) {
        if (c.activation == ActivationKind::SiLU)
          ops::silu_mul(A + b * F, B + b * F, A + b * F, (e - b) * F);
        else
          for (int64_t i = b * F; i < e * F; ++i) A[i] = ops::gelu_tanh(A[i]) * B[i];
      });
    } else {
      run_linear(L.up, Hb, rows, A);
      pool_->parallel_for(rows, 4, [&](int64_t b, int64_t e, int) {
        if (c.activation == ActivationKind::SiLU)
          for (int64_t i = b * F; i < e * F; ++i) A[i] = ops::silu(A[i]);
        else
          ops::gelu_tanh_inplace(A + b * F, (e - b) * F);
      });
    }
    run_linear(L.down, A, rows, Hb);
    for (int64_t i = 0; i < rows * H; ++i) X[i] += Hb[i];
  }
  for (Segment& s : segs) s.cache->set_size(s.pos0 + s.n);
  if (block_pass_) {
    std::memcpy(block_pass_->hidden, X, static_cast<size_t>(rows * H) * sizeof(float));
    return;
  }

  // Output projection, only where logits are wanted, in chunks of logits_chunk rows.
  w.logit_rows.clear();
  w.logit_src.clear();
  {
    int64_t r = 0;
    for (size_t si = 0; si < segs.size(); ++si) {
      const Segment& s = segs[si];
      for (int64_t i = 0; i < s.n; ++i, ++r)
        if (i >= s.logits_from) {
          w.logit_rows.emplace_back(si, i);
          w.logit_src.push_back(r);
        }
    }
  }
  const int64_t n_logits = static_cast<int64_t>(w.logit_rows.size());
  for (int64_t b = 0; b < n_logits; b += opts_.logits_chunk) {
    const int64_t n = std::min(opts_.logits_chunk, n_logits - b);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t r = w.logit_src[static_cast<size_t>(b + j)];
      if (ln)
        ops::layernorm(X + r * H, out_norm_w_.data(), out_norm_b_.empty() ? nullptr : out_norm_b_.data(),
                       w.logits_in.data() + j * H, H, c.norm_eps);
      else
        ops::rmsnorm(X + r * H, out_norm_w_.data(), w.logits_in.data() + j * H, H, c.norm_eps);
    }
    run_linear(*output_, w.logits_in.data(), n, w.logits.data());
    for (int64_t j = 0; j < n; ++j) {
      const auto [si, i] = w.logit_rows[static_cast<size_t>(b + j)];
      const Segment& s = segs[si];
      sink(s.seq, s.pos0 + i, w.logits.data() + j * vocab_);
    }
  }
}

void Engine::evaluate(std::span<const SequenceView> seqs, const LogitsVisitor& visit) {
  struct VisitSink final : Sink {
    const LogitsVisitor* v;
    void operator()(size_t seq, int64_t pos, const float* logits) override { (*v)(seq, pos, logits); }
  } sink;
  sink.v = &visit;
  for (const SequenceView& s : seqs) check_tokens(s.tokens);
  const int64_t budget = std::max<int64_t>(1, opts_.max_batch_tokens);
  std::vector<Segment> segs;
  size_t first = 0;       // first sequence not finished
  int64_t done_first = 0; // tokens of seqs[first] already evaluated (its cache is slot 0)
  while (first < seqs.size()) {
    if (seqs[first].tokens.empty()) {
      ++first;
      done_first = 0;
      continue;
    }
    segs.clear();
    int64_t left = budget;
    size_t i = first;
    int64_t done = done_first;
    while (i < seqs.size() && left > 0) {
      const int64_t len = static_cast<int64_t>(seqs[i].tokens.size());
      if (len == 0) {
        ++i;
        continue;
      }
      if (scratch_caches_.size() <= segs.size()) scratch_caches_.emplace_back(cfg_.n_layers, cfg_.kv_dim(), 0, kv_format_);
      KVCache& cache = scratch_caches_[segs.size()];
      if (done == 0) {
        cache.reserve(len);
        cache.clear();
      }
      const int64_t take = std::min(len - done, left);
      Segment s;
      s.tokens = seqs[i].tokens.data() + done;
      s.n = take;
      s.cache = &cache;
      s.pos0 = done;
      s.seq = i;
      s.logits_from = std::max<int64_t>(0, seqs[i].logits_from - done);
      segs.push_back(s);
      left -= take;
      if (done + take < len) {
        done += take;
        break;  // budget exhausted inside sequence i
      }
      ++i;
      done = 0;
    }
    forward(segs, sink);
    // The next round starts at sequence i; if it is part-done, its cache is the last segment's.
    if (done > 0) std::swap(scratch_caches_[0], scratch_caches_[segs.size() - 1]);
    first = i;
    done_first = done;
  }
}

std::vector<ScoreResult> Engine::score(std::span<const ScoreRequest> batch) {
  std::vector<SequenceView> views(batch.size());
  std::vector<ScoreResult> out(batch.size());
  for (const ScoreRequest& r : batch) check_tokens(r.tokens);
  for (size_t i = 0; i < batch.size(); ++i) {
    const ScoreRequest& r = batch[i];
    const int64_t n = static_cast<int64_t>(r.tokens.size());
    if (r.score_from < 1) throw Error("score_from must be >= 1 (position 0 has no context)");
    // Position p's logits predict token p+1: logits are needed from score_from - 1 to n - 2,
    // so the last token is never fed (a window of n tokens needs only n - 1 positions).
    views[i].tokens = std::span<const TokenId>(r.tokens).first(static_cast<size_t>(std::max<int64_t>(0, n - 1)));
    views[i].logits_from = std::min(r.score_from - 1, n);
    const size_t cnt = static_cast<size_t>(std::max<int64_t>(0, n - r.score_from));
    out[i].logprobs.assign(cnt, 0.0);
    out[i].greedy.assign(cnt, 0);
  }
  evaluate(views, [&](size_t seq, int64_t pos, const float* logits) {
    const ScoreRequest& r = batch[seq];
    const int64_t target_pos = pos + 1;
    if (target_pos >= static_cast<int64_t>(r.tokens.size()) || target_pos < r.score_from) return;
    const TokenId t = r.tokens[static_cast<size_t>(target_pos)];
    const double lse = ops::logsumexp(logits, vocab_);
    const size_t k = static_cast<size_t>(target_pos - r.score_from);
    out[seq].logprobs[k] = static_cast<double>(logits[t]) - lse;
    const float* mx = std::max_element(logits, logits + vocab_);
    out[seq].greedy[k] = (mx - logits) == t ? 1 : 0;
  });
  return out;
}

std::vector<float> Engine::embed(std::span<const TokenId> tokens, int64_t seq_len) const {
  const int64_t H = cfg_.hidden_size, n = static_cast<int64_t>(tokens.size());
  if (seq_len <= 0 || n % seq_len != 0)
    throw Error("embed: " + std::to_string(n) + " tokens are not whole sequences of " + std::to_string(seq_len));
  if (seq_len > n_ctx_) throw Error("embed: sequences of " + std::to_string(seq_len) + " tokens exceed the context of " + std::to_string(n_ctx_));
  check_tokens(tokens);
  std::vector<float> x(static_cast<size_t>(n * H)), pos(static_cast<size_t>(H));
  for (int64_t i = 0; i < n; ++i) {
    tok_embd_.row_to_f32(tokens[static_cast<size_t>(i)], x.data() + i * H);
    if (cfg_.position == PositionKind::Learned) {
      pos_embd_.row_to_f32(i % seq_len, pos.data());
      for (int64_t j = 0; j < H; ++j) x[static_cast<size_t>(i * H + j)] += pos[static_cast<size_t>(j)];
    }
  }
  return x;
}

void Engine::forward_block(int layer, std::span<float> hidden, int64_t seq_len) {
  const int64_t H = cfg_.hidden_size;
  if (layer < 0 || layer >= static_cast<int>(layers_.size())) throw Error("forward_block: no layer " + std::to_string(layer));
  if (seq_len <= 0 || hidden.size() % static_cast<size_t>(seq_len * H) != 0)
    throw Error("forward_block: " + std::to_string(hidden.size()) + " values are not whole sequences of " +
                std::to_string(seq_len) + " x " + std::to_string(H));
  if (seq_len > n_ctx_) throw Error("forward_block: sequences of " + std::to_string(seq_len) + " tokens exceed the context of " + std::to_string(n_ctx_));
  struct NoSink final : Sink {
    void operator()(size_t, int64_t, const float*) override {}
  } sink;
  const std::vector<TokenId> placeholder(static_cast<size_t>(seq_len), 0);  // embeddings are replaced by `hidden`
  const int64_t n_seqs = static_cast<int64_t>(hidden.size()) / (seq_len * H);
  const int64_t per_round = std::max<int64_t>(1, opts_.max_batch_tokens / seq_len);
  std::vector<Segment> segs;
  for (int64_t s0 = 0; s0 < n_seqs; s0 += per_round) {
    const int64_t ns = std::min(per_round, n_seqs - s0);
    segs.clear();
    for (int64_t i = 0; i < ns; ++i) {
      if (scratch_caches_.size() <= static_cast<size_t>(i)) scratch_caches_.emplace_back(cfg_.n_layers, cfg_.kv_dim(), 0, kv_format_);
      KVCache& cache = scratch_caches_[static_cast<size_t>(i)];
      cache.reserve(seq_len);
      cache.clear();
      Segment s;
      s.tokens = placeholder.data();
      s.n = seq_len;
      s.cache = &cache;
      s.logits_from = seq_len;
      s.seq = static_cast<size_t>(i);
      segs.push_back(s);
    }
    const BlockPass pass{layer, hidden.data() + s0 * seq_len * H};
    block_pass_ = &pass;
    try {
      forward(segs, sink);
    } catch (...) {
      block_pass_ = nullptr;
      throw;
    }
    block_pass_ = nullptr;
  }
}

std::vector<float> Engine::logits(std::span<const TokenId> tokens) {
  std::vector<float> out(tokens.size() * static_cast<size_t>(vocab_));
  SequenceView v{tokens, 0};
  evaluate({&v, 1}, [&](size_t, int64_t pos, const float* l) {
    std::copy_n(l, vocab_, out.data() + pos * vocab_);
  });
  return out;
}

std::span<const float> Engine::append(KVCache& cache, std::span<const TokenId> tokens) {
  if (tokens.empty()) throw Error("append: no tokens");
  if (cache.n_layers() != cfg_.n_layers || cache.kv_dim() != cfg_.kv_dim()) throw Error("append: KV cache belongs to another model");
  struct LastSink final : Sink {
    float* dst;
    int64_t vocab;
    void operator()(size_t, int64_t, const float* logits) override { std::copy_n(logits, vocab, dst); }
  } sink;
  ensure_workspace(1, 1);
  sink.dst = ws_->last_logits.data();
  sink.vocab = vocab_;
  const int64_t budget = std::max<int64_t>(1, opts_.max_batch_tokens);
  for (size_t done = 0; done < tokens.size();) {
    const int64_t take = std::min<int64_t>(budget, static_cast<int64_t>(tokens.size() - done));
    Segment s;
    s.tokens = tokens.data() + done;
    s.n = take;
    s.cache = &cache;
    s.pos0 = cache.size();
    s.logits_from = done + static_cast<size_t>(take) == tokens.size() ? take - 1 : take;
    forward({&s, 1}, sink);
    done += static_cast<size_t>(take);
  }
  return {ws_->last_logits.data(), static_cast<size_t>(vocab_)};
}

std::span<const float> Engine::append_batch(std::span<KVCache* const> caches,
                                            std::span<const std::span<const TokenId>> tokens) {
  if (caches.size() != tokens.size())
    throw Error("append_batch: " + std::to_string(caches.size()) + " caches for " + std::to_string(tokens.size()) +
                " token lists");
  const size_t n_seqs = caches.size();
  for (size_t i = 0; i < n_seqs; ++i) {
    if (caches[i] == nullptr) throw Error("append_batch: no KV cache for sequence " + std::to_string(i));
    if (tokens[i].empty()) throw Error("append_batch: no tokens for sequence " + std::to_string(i));
    if (caches[i]->n_layers() != cfg_.n_layers || caches[i]->kv_dim() != cfg_.kv_dim())
      throw Error("append_batch: KV cache of sequence " + std::to_string(i) + " belongs to another model");
    if (caches[i]->size() + static_cast<int64_t>(tokens[i].size()) > caches[i]->capacity())
      throw Error("context full: " + std::to_string(caches[i]->size() + static_cast<int64_t>(tokens[i].size())) +
                  " positions do not fit the KV cache of " + std::to_string(caches[i]->capacity()) + " (sequence " +
                  std::to_string(i) + ")");
    for (size_t j = 0; j < i; ++j)
      if (caches[j] == caches[i]) throw Error("append_batch: sequences " + std::to_string(j) + " and " + std::to_string(i) + " share a KV cache");
    check_tokens(tokens[i]);  // before any cache is touched
  }
  struct RowSink final : Sink {
    float* dst;
    int64_t vocab;
    void operator()(size_t seq, int64_t, const float* logits) override { std::copy_n(logits, vocab, dst + seq * vocab); }
  } sink;
  ensure_workspace(1, 1);
  Workspace& w = *ws_;
  if (w.batch_logits.size() < n_seqs * static_cast<size_t>(vocab_)) w.batch_logits.resize(n_seqs * static_cast<size_t>(vocab_));
  w.batch_done.assign(n_seqs, 0);
  sink.dst = w.batch_logits.data();
  sink.vocab = vocab_;
  const int64_t budget = std::max<int64_t>(1, opts_.max_batch_tokens);
  std::vector<Segment>& segs = w.batch_segs;  // kept: steady batched decoding does not allocate
  for (;;) {
    segs.clear();
    int64_t left = budget;
    for (size_t i = 0; i < n_seqs && left > 0; ++i) {
      const int64_t remaining = static_cast<int64_t>(tokens[i].size() - w.batch_done[i]);
      if (remaining == 0) continue;
      const int64_t take = std::min(remaining, left);
      Segment s;
      s.tokens = tokens[i].data() + w.batch_done[i];
      s.n = take;
      s.cache = caches[i];
      s.pos0 = caches[i]->size();
      s.seq = i;
      s.logits_from = take == remaining ? take - 1 : take;
      segs.push_back(s);
      left -= take;
    }
    if (segs.empty()) break;
    forward(segs, sink);
    for (const Segment& s : segs) w.batch_done[s.seq] += static_cast<size_t>(s.n);
  }
  return {w.batch_logits.data(), n_seqs * static_cast<size_t>(vocab_)};
}

}  // namespace qeval
