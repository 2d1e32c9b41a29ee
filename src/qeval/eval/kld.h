#pragma once
// KL divergence of a model against a reference model, llama-perplexity's --kl-divergence report.
//
// Windows: llama-perplexity's (the "llamacpp" perplexity method, perplexity.h): the text is
// tokenized once with BOS, cut into consecutive n_ctx-token chunks (first token of each replaced
// by BOS), and the logits at positions n_ctx/2 .. n_ctx-2 of each chunk are compared (they
// predict tokens n_ctx/2+1 .. n_ctx-1: n_ctx-1-n_ctx/2 scored positions per chunk).
//
// Per scored position, with P the reference distribution, Q the model's, t the actual next token:
//   KLD      = sum_i P_i (ln P_i - ln Q_i)                       (nats, >= 0)
//   Δp       = Q_t - P_t                                         (llama-perplexity's Δp: the
//                                                                 probability of the actual token)
//   Δp_top   = Q_r - P_r, r = argmax P                           (QEval extra)
//   same top = argmax Q == argmax P (first index among ties)
//   nll, nll_base = -ln Q_t, -ln P_t
// Aggregates (n scored positions; stderr(x) = sqrt((mean(x^2) - mean(x)^2) / (n-1))):
//   PPL(Q) = exp(mean nll) ± PPL(Q)·stderr(nll); PPL(base) likewise;
//   Cor(ln PPL(Q), ln PPL(base)) = Pearson correlation of nll and nll_base;
//   mean ln(PPL(Q)/PPL(base)) = mean(nll - nll_base) ± stderr(nll - nll_base);
//   PPL(Q)/PPL(base) = exp(that) ± exp(that)·stderr; PPL(Q)-PPL(base) ± the delta-method error
//     sqrt(PPL(Q)² v_q + PPL(base)² v_b - 2 PPL(Q) PPL(base) c), v = stderr², c = cov/(n-1);
//   KLD mean ± stderr; Δp mean ± stderr; RMS Δp = sqrt(mean Δp²) ± (delta method)
//     sqrt((mean Δp⁴ - mean(Δp²)²)/(n-1)) / (2 RMS); same top = f ± sqrt(f(1-f)/(n-1)).
// Percentiles: linear interpolation between order statistics (rank q·(n-1), 0-based), so the
// median of an even count is the mean of the two middle values.
//
// Differences from llama-perplexity: it stores the reference log-probabilities as 16-bit codes
// (a per-position scale and minimum) and skips terms with ln P_i < -16, so its per-position KLD
// carries noise of about 1e-5 and can be negative; QEval computes every term from float32
// log-probabilities in double precision (KLD >= 0 up to rounding).
//
// Top-k reference files (--save-topk / --reference-topk) keep, per scored position, the
// reference's k largest log-probabilities with their ids, ln P_t of the actual token and the
// tail mass P_T = sum of P over the other tokens. KLD is then computed over the k entries plus
// one tail bucket T (Q_T = Q's mass on the same tokens, summed directly):
//   KLD_k = sum_{i in top-k} P_i ln(P_i/Q_i) + P_T ln(P_T/Q_T).
// By the log-sum inequality sum_{i in T} P_i ln(P_i/Q_i) >= P_T ln(P_T/Q_T), so KLD_k <= KLD,
// and the gap is exactly P_T · KL(a||b), a = P|T, b = Q|T (both renormalized on the tail).
// Jensen gives KL(a||b) <= ln sum_T a_i²/b_i. a is unknown beyond 0 <= a_i <= a_max =
// min(1, P_(k)/P_T) (no tail probability exceeds the k-th largest) and sum a_i = 1; the sum is
// convex in a, so it is largest when a_max is put on the smallest b_i first (the remainder on
// the next one). Hence, per position,
//   0 <= KLD - KLD_k <= B = P_T · max(0, ln sum_j a_j*²/b_(j)),  a* = (a_max, a_max, ..., rest),
//   b_(1) <= b_(2) <= ... the model's tail probabilities in increasing order,
// (looser but simpler: B <= P_T · ln(a_max / b_(1))),
// which is computed from the model's full distribution and reported (mean and max of B). PPL,
// Δp and same-top figures are exact in top-k mode (ln P_t and argmax P are stored).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval {

// ---- per-position computations (exposed for tests) ----

// log-softmax in double of n logits, stored as float.
void log_softmax(const float* logits, int64_t n, float* out);

struct TokenStats {
  double kld = 0;          // exact (full) or top-k approximation
  double kld_bound = 0;    // top-k: upper bound on (exact - approximation); 0 when exact
  double nll = 0, nll_base = 0;
  double p = 0, p_base = 0;          // of the actual next token
  double p_top = 0, p_base_top = 0;  // of the reference's argmax
  bool same_top = false;
};

// Reference = full log-probabilities (n_vocab), model = raw logits.
TokenStats token_stats_full(const float* ref_logprobs, const float* logits, int64_t n_vocab, TokenId target);

struct TopKRecord {
  TokenId target = 0;
  float logprob_target = 0;       // ln P_t
  float tail = 0;                 // P_T: reference mass outside the top k
  std::vector<TokenId> ids;       // k ids, descending log-probability (ties: lower id first)
  std::vector<float> logprobs;    // k values
};

TopKRecord make_topk_record(const float* ref_logprobs, int64_t n_vocab, int64_t k, TokenId target);
TokenStats token_stats_topk(const TopKRecord& ref, const float* logits, int64_t n_vocab);

// ---- top-k file ----
// Binary, little-endian. Header, 64 bytes:
//   0  char[8] "QEVTOPK1"   8 uint32 version (1)   12 uint32 k
//   16 int64 n_vocab   24 int64 n_ctx   32 int64 n_chunks   40 int64 n_positions
//   48 uint64 tokens_hash (FNV-1a 64 over the little-endian int32 ids of every chunk as
//      evaluated, BOS replacement included: a different text, tokenizer, ctx or chunk count
//      does not match)   56 uint64 reserved (0)
// Then n_positions records (chunk order, position order), each 12 + 8k bytes:
//   int32 target id, float32 ln P_target, float32 tail mass P_T,
//   int32 ids[k], float32 logprobs[k] (descending).
// Written to "<path>.tmp.<pid>" and renamed into place when complete.
struct TopKHeader {
  uint32_t version = 1;
  uint32_t k = 0;
  int64_t n_vocab = 0, n_ctx = 0, n_chunks = 0, n_positions = 0;
  uint64_t tokens_hash = 0;
};

class TopKWriter {
 public:
  TopKWriter(const std::string& path, const TopKHeader& header);
  ~TopKWriter();
  void add(const TopKRecord& r);
  void commit();  // throws unless exactly n_positions records were added
 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class TopKReader {
 public:
  explicit TopKReader(const std::string& path);  // validates magic, version, size
  ~TopKReader();
  const TopKHeader& header() const;
  TopKRecord next();  // throws past the end
 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- the whole comparison ----

struct KldOptions {
  int64_t n_ctx = 512;
  int64_t max_chunks = -1;  // -1: all
  int64_t batch = 16;       // chunks evaluated together (lowered to keep the reference's
                            // stored log-probabilities under ~1 GiB)
  int64_t save_topk = 0;    // > 0: write a top-k file (needs a reference engine)
  std::string save_topk_path;
  std::string reference_topk_path;  // non-empty: the reference comes from this file
  std::function<void(int64_t done, int64_t total)> progress;
};

struct KldResult {
  int64_t n_ctx = 0, chunks = 0, text_tokens = 0, scored_tokens = 0;
  bool topk_reference = false;
  int64_t topk = 0;
  double ppl_q = 0, ppl_q_err = 0, ppl_base = 0, ppl_base_err = 0;
  double cor_ln_ppl = 0;
  double ln_ratio = 0, ln_ratio_err = 0;
  double ppl_ratio = 0, ppl_ratio_err = 0;
  double ppl_diff = 0, ppl_diff_err = 0;
  double kld = 0, kld_err = 0;
  double kld_bound_mean = 0, kld_bound_max = 0;  // top-k mode
  std::vector<std::pair<std::string, double>> kld_percentiles;  // "max", "99.9", ..., "min"
  double dp = 0, dp_err = 0, dp_rms = 0, dp_rms_err = 0;          // fractions (not %)
  std::vector<std::pair<std::string, double>> dp_percentiles;    // "max", "99.9", ..., "min"
  double dp_top = 0, dp_top_err = 0, dp_top_rms = 0, dp_top_rms_err = 0;
  std::vector<std::pair<std::string, double>> dp_top_percentiles;
  double same_top = 0, same_top_err = 0;  // fractions
  std::vector<TokenStats> per_token;      // kept when asked (tests)
};

// Linear-interpolation percentile of sorted values, q in [0, 1].
double percentile_sorted(const std::vector<double>& sorted, double q);

// `reference` may be null when options.reference_topk_path is set. The tokenizer is the
// reference's (both models must share the vocabulary size).
KldResult kl_divergence(Engine* reference, Engine& model, const Tokenizer& tokenizer, std::string_view text,
                        const KldOptions& options, bool keep_per_token = false);

// Aggregates from per-position statistics (kl_divergence uses it; exposed for tests).
KldResult summarize_kld(const std::vector<TokenStats>& stats);

// llama-perplexity's report layout.
std::string format_kld_report(const KldResult& r);

}  // namespace qeval
