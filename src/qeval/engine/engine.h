#pragma once
// The decoder: one forward pass driven by ModelConfig for llama / mistral (sliding window) /
// qwen2 (QKV bias) / qwen3 (QK-norm) / gpt2 (LayerNorm + bias, learned positions, GELU).
//
// Entry points:
//  - score():    per-token log-probabilities of given tokens for many sequences in a batch
//                (log-softmax via logsumexp per position; no vocabulary-sized copies kept).
//  - evaluate(): the raw logits of chosen positions of many sequences, handed to a visitor
//                one position at a time (KL divergence, top-k dumps).
//  - append():   incremental evaluation with a KV cache (generation; see generate.h).
//
// Batching: the rows of all sequences in a batch go through each linear layer together (one
// sgemm); attention runs per sequence on its own KV cache. Batches above max_batch_tokens
// rows are split (a long sequence continues in the next round from its KV cache).
//
// Invariance: a sequence's results do not depend on what else is in its batch or on the
// thread count except through float summation order inside sgemm (and GEMV when a round has
// one row). Tests bound the difference at 1e-4 absolute on logits.
//
// Not thread-safe: one Engine serves one caller at a time (it owns its scratch buffers).
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qeval/engine/hooks.h"
#include "qeval/engine/kv_cache.h"
#include "qeval/engine/linear.h"
#include "qeval/engine/ops.h"
#include "qeval/engine/thread_pool.h"
#include "qeval/io/model.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval {

struct EngineOptions {
  int threads = 0;                 // 0: hardware concurrency (also sets OpenBLAS's thread count)
  bool ggml_compat = false;        // round activations like llama.cpp's CPU backend (see linear.h)
  bool kv_f16 = false;             // round K, V (and Q for Q.K) to F16, like llama.cpp's F16 KV cache
  int64_t context_length = 0;      // 0: the model's context_length
  int64_t max_batch_tokens = 2048; // rows per forward round
  int64_t logits_chunk = 64;       // output-projection rows computed at once
};

struct ScoreRequest {
  std::vector<TokenId> tokens;  // the whole sequence (context + continuation)
  int64_t score_from = 1;       // first position whose token is scored; >= 1
};

struct ScoreResult {
  std::vector<double> logprobs;  // log p(tokens[i] | tokens[<i]) for i = score_from .. n-1
  std::vector<uint8_t> greedy;   // 1 where tokens[i] is the argmax at its position
  double sum() const;
  bool all_greedy() const;
};

struct SequenceView {
  std::span<const TokenId> tokens;
  int64_t logits_from = 0;  // logits wanted at positions logits_from .. n-1 (n: none)
};

// Receives the logits (vocab floats, valid only during the call) of position `pos` of
// sequence `seq` (index into the span given to evaluate).
using LogitsVisitor = std::function<void(size_t seq, int64_t pos, const float* logits)>;

// The normalization in front of a block's attention (attn_norm) or FFN (ffn_norm).
enum class NormSite : uint8_t { Attn, Ffn };

class Engine {
 public:
  explicit Engine(const Model& model, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const EngineOptions& options() const { return opts_; }
  int64_t vocab_size() const { return vocab_; }
  int64_t context_length() const { return n_ctx_; }
  int threads() const { return pool_->size(); }
  void set_threads(int n);

  // Hooks (not owned; nullptr removes). See hooks.h.
  void set_hooks(ForwardHooks* hooks) { hooks_ = hooks; }
  ForwardHooks* hooks() const { return hooks_; }

  // Every linear layer, in forward order (layer 0 attn_q ... output).
  std::vector<LinearId> linear_ids() const;
  const Linear& linear(const LinearId& id) const;
  // Replace a layer's weights: a tensor [out, in] of any dtype (as make_linear does: a packed
  // kernel where one exists, else dequantized; activation rounding follows its dtype in
  // ggml-compatible mode) or float values [out*in]. The shape
  // must match the layer's.
  void set_linear_weights(const LinearId& id, const Tensor& weight);
  void set_linear_weights(const LinearId& id, std::vector<float> values);
  void set_linear_weights(const LinearId& id, std::unique_ptr<LinearWeights> weights);

  // Mutable parameters for function-preserving rescaling (AWQ / SmoothQuant fold per-channel
  // scales into the preceding norm or linear). Changes take effect in the next forward.
  // norm_weight: hidden_size floats; norm_bias: empty for RMSNorm models; linear_bias: empty
  // when the layer has no bias. Throw qeval::Error for an invalid layer / id.
  std::vector<float>& norm_weight(int layer, NormSite site);
  std::vector<float>& norm_bias(int layer, NormSite site);
  std::vector<float>& linear_bias(const LinearId& id);

  std::vector<ScoreResult> score(std::span<const ScoreRequest> batch);
  // Full logits [n_tokens][vocab] of one sequence.
  std::vector<float> logits(std::span<const TokenId> tokens);
  void evaluate(std::span<const SequenceView> seqs, const LogitsVisitor& visit);

  // Storage of the KV caches: those new_cache() returns and the engine's own (score, evaluate,
  // forward_block). F32 by default; a quantized format (kv_cache.h) stores codes and gives the
  // results of quantize-dequantizing K and V into a float cache with the same quantizer. Takes
  // effect for caches created afterwards. Throws qeval::Error when a quantized format's head_dim
  // is not the model's or its quantizer is missing.
  void set_kv_format(KvFormat format);
  const KvFormat& kv_format() const { return kv_format_; }
  // Bytes a KV cache of kv_format() holds for `positions` tokens (codes, scales and zeros of
  // every layer's K and V; allocates nothing): what `qeval bench` reports as KV memory.
  int64_t kv_cache_bytes(int64_t positions) const;
  // Incremental evaluation. new_cache(0) holds context_length() positions.
  KVCache new_cache(int64_t capacity = 0) const;
  // Appends tokens (positions cache.size() ...) and returns the logits of the last one; the
  // span stays valid until the next call. No allocation once the engine has seen a batch of
  // this size. Throws qeval::Error when the cache is full or a token id is invalid.
  std::span<const float> append(KVCache& cache, std::span<const TokenId> tokens);
  // Batched incremental evaluation: appends tokens[i] to caches[i] for every i in one forward
  // pass per round (the rows of all sequences go through each linear layer together, so a
  // weight matrix is read once per round instead of once per sequence; attention runs on each
  // sequence's own cache). Returns the logits of each sequence's last new token, row i for
  // caches[i] ([caches.size()][vocab]), valid until the next call. Rounds hold at most
  // max_batch_tokens rows (a long sequence continues in the next round). Each sequence gets the
  // logits append() would give it up to float summation order inside the matrix products.
  // Throws qeval::Error for a size mismatch, an empty token list, a full cache, a cache of
  // another model, the same cache twice, or an invalid token.
  std::span<const float> append_batch(std::span<KVCache* const> caches,
                                      std::span<const std::span<const TokenId>> tokens);

  // Throws qeval::Error naming the first invalid id.
  void check_tokens(std::span<const TokenId> tokens) const;

  // Block-wise evaluation, for sequential calibration (PTQ keeps every sample's hidden state
  // between decoder blocks instead of re-running the prefix: O(n_layers) block passes in all).
  // `hidden` holds n_seqs sequences of seq_len tokens at positions 0 .. seq_len-1, concatenated:
  // [n_seqs * seq_len, hidden_size]. embed() returns the input of block 0; forward_block() applies
  // decoder block `layer` in place with the installed hooks called as in a full forward
  // (linear_input / linear_output / kv), in rounds of whole sequences of at most
  // max_batch_tokens rows (at least one sequence). Chaining every block gives the hidden state
  // the full forward feeds to output_norm, with the same per-row arithmetic.
  std::vector<float> embed(std::span<const TokenId> tokens, int64_t seq_len) const;
  void forward_block(int layer, std::span<float> hidden, int64_t seq_len);

 private:
  struct Segment {
    const TokenId* tokens = nullptr;
    int64_t n = 0;
    KVCache* cache = nullptr;
    int64_t logits_from = 0;  // index within this segment
    size_t seq = 0;           // caller's sequence index
    int64_t pos0 = 0;         // absolute position of tokens[0]
  };
  struct Sink {
    virtual ~Sink() = default;
    virtual void operator()(size_t seq, int64_t pos, const float* logits) = 0;
  };
  struct Layer;
  struct Workspace;

  void forward(std::span<Segment> segs, Sink& sink);
  void run_linear(const Linear& L, const float* x, int64_t rows, float* y);
  void ensure_workspace(int64_t rows, int64_t max_len);
  Linear& linear_mut(const LinearId& id);

  ModelConfig cfg_;
  EngineOptions opts_;
  int64_t vocab_ = 0;
  int64_t n_ctx_ = 0;
  Tensor tok_embd_;
  Tensor pos_embd_;  // gpt2
  std::vector<Layer> layers_;
  std::vector<float> out_norm_w_, out_norm_b_;
  std::unique_ptr<Linear> output_;
  ops::RopeTable rope_;
  std::unique_ptr<ThreadPool> pool_;
  ForwardHooks* hooks_ = nullptr;
  // Set only during forward_block(): forward() then runs just this block on these rows.
  struct BlockPass {
    int layer = 0;
    float* hidden = nullptr;
  };
  const BlockPass* block_pass_ = nullptr;
  std::unique_ptr<Workspace> ws_;
  std::deque<KVCache> scratch_caches_;  // deque: growing keeps earlier caches in place
  KvFormat kv_format_;                  // of new_cache() and scratch_caches_
};

}  // namespace qeval
