#include "qeval/eval/kld.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>

#include "qeval/util/atomic_file.h"
#include "qeval/util/error.h"

namespace qeval {

namespace {

constexpr char kMagic[8] = {'Q', 'E', 'V', 'T', 'O', 'P', 'K', '1'};
constexpr size_t kHeaderBytes = 64;

size_t record_bytes(uint32_t k) { return 12 + 8 * static_cast<size_t>(k); }

// max and log-sum-exp of logits, in double.
struct Lse {
  double max = 0, lse = 0;
  int64_t argmax = 0;
};
Lse log_sum_exp(const float* x, int64_t n) {
  Lse r;
  r.max = x[0];
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > r.max) r.max = x[i], r.argmax = i;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - r.max);
  r.lse = r.max + std::log(s);
  return r;
}

int64_t argmax_of(const float* x, int64_t n) {
  int64_t a = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[a]) a = i;
  return a;
}

void check_target(TokenId t, int64_t n_vocab) {
  if (t < 0 || t >= n_vocab) throw Error("kld: target token " + std::to_string(t) + " outside the vocabulary");
}

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

template <typename T>
void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}
template <typename T>
T get(const char*& p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return v;
}

struct Moments {
  double s = 0, s2 = 0;
  int64_t n = 0;
  void add(double x) { s += x, s2 += x * x, ++n; }
  double mean() const { return n ? s / static_cast<double>(n) : 0.0; }
  double stderr_() const {
    if (n < 2) return 0.0;
    const double m = mean(), v = s2 / static_cast<double>(n) - m * m;
    return v > 0 ? std::sqrt(v / static_cast<double>(n - 1)) : 0.0;
  }
};

std::vector<std::pair<std::string, double>> percentiles(std::vector<double> v, bool quartiles) {
  std::sort(v.begin(), v.end());
  std::vector<std::pair<std::string, double>> out;
  out.emplace_back("max", v.back());
  std::vector<std::pair<const char*, double>> qs = {{"99.9", 0.999}, {"99", 0.99}, {"95", 0.95}, {"90", 0.90}};
  if (quartiles) qs.push_back({"75", 0.75});
  qs.push_back({"median", 0.5});
  if (quartiles) qs.push_back({"25", 0.25});
  for (auto q : {std::pair<const char*, double>{"10", 0.10}, {"5", 0.05}, {"1", 0.01}, {"0.1", 0.001}}) qs.push_back(q);
  for (const auto& [name, q] : qs) out.emplace_back(name, percentile_sorted(v, q));
  out.emplace_back("min", v.front());
  return out;
}

}  // namespace

void log_softmax(const float* logits, int64_t n, float* out) {
  const Lse l = log_sum_exp(logits, n);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<double>(logits[i]) - l.lse);
}

TokenStats token_stats_full(const float* ref_lp, const float* logits, int64_t n_vocab, TokenId target) {
  check_target(target, n_vocab);
  const Lse q = log_sum_exp(logits, n_vocab);
  TokenStats s;
  double kld = 0;
  for (int64_t i = 0; i < n_vocab; ++i) {
    const double lp = ref_lp[i];
    if (lp == -std::numeric_limits<double>::infinity()) continue;
    kld += std::exp(lp) * (lp - (static_cast<double>(logits[i]) - q.lse));
  }
  s.kld = kld;
  const int64_t r = argmax_of(ref_lp, n_vocab);
  s.nll = q.lse - logits[target];
  s.nll_base = -static_cast<double>(ref_lp[target]);
  s.p = std::exp(-s.nll);
  s.p_base = std::exp(-s.nll_base);
  s.p_top = std::exp(static_cast<double>(logits[r]) - q.lse);
  s.p_base_top = std::exp(static_cast<double>(ref_lp[r]));
  s.same_top = q.argmax == r;
  return s;
}

TopKRecord make_topk_record(const float* ref_lp, int64_t n_vocab, int64_t k, TokenId target) {
  check_target(target, n_vocab);
  if (k < 1 || k > n_vocab) throw Error("top-k: k must be in 1.." + std::to_string(n_vocab));
  thread_local std::vector<TokenId> idx;
  idx.resize(static_cast<size_t>(n_vocab));
  std::iota(idx.begin(), idx.end(), 0);
  auto before = [&](TokenId a, TokenId b) { return ref_lp[a] > ref_lp[b] || (ref_lp[a] == ref_lp[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), before);
  TopKRecord r;
  r.target = target;
  r.logprob_target = ref_lp[target];
  r.ids.assign(idx.begin(), idx.begin() + k);
  r.logprobs.resize(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) r.logprobs[static_cast<size_t>(i)] = ref_lp[idx[static_cast<size_t>(i)]];
  double tail = 0;
  for (int64_t i = k; i < n_vocab; ++i) tail += std::exp(static_cast<double>(ref_lp[idx[static_cast<size_t>(i)]]));
  r.tail = static_cast<float>(tail);
  return r;
}

TokenStats token_stats_topk(const TopKRecord& ref, const float* logits, int64_t n_vocab) {
  check_target(ref.target, n_vocab);
  if (ref.ids.empty() || ref.ids.size() != ref.logprobs.size()) throw Error("top-k record: bad entry count");
  const Lse q = log_sum_exp(logits, n_vocab);
  thread_local std::vector<uint8_t> in_top;
  in_top.assign(static_cast<size_t>(n_vocab), 0);
  TokenStats s;
  double kld = 0;
  for (size_t j = 0; j < ref.ids.size(); ++j) {
    const TokenId id = ref.ids[j];
    check_target(id, n_vocab);
    in_top[static_cast<size_t>(id)] = 1;
    const double lp = ref.logprobs[j];
    kld += std::exp(lp) * (lp - (static_cast<double>(logits[id]) - q.lse));
  }
  // The tail bucket: Q's mass on the same tokens, summed directly (log domain).
  double t_max = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n_vocab; ++i)
    if (!in_top[static_cast<size_t>(i)]) t_max = std::max<double>(t_max, logits[i]);
  const double P_T = ref.tail;
  if (P_T > 0 && std::isfinite(t_max)) {
    double st = 0;
    for (int64_t i = 0; i < n_vocab; ++i)
      if (!in_top[static_cast<size_t>(i)]) st += std::exp(static_cast<double>(logits[i]) - t_max);
    const double ln_QT = t_max + std::log(st) - q.lse;
    const double ln_PT = std::log(P_T);
    kld += P_T * (ln_PT - ln_QT);
    // Gap bound: P_T * KL(a||b) with a = P|T, b = Q|T. Jensen: KL(a||b) <= ln sum a_i^2/b_i.
    // a is unknown except 0 <= a_i <= a_max = min(1, P_(k)/P_T) and sum a_i = 1; sum a_i^2/b_i
    // is convex in a, so its maximum puts a_max on the smallest b_i first (remainder on the next).
    const double a_max = std::min(1.0, std::exp(static_cast<double>(ref.logprobs.back())) / P_T);
    thread_local std::vector<double> tb;
    tb.clear();
    for (int64_t i = 0; i < n_vocab; ++i)
      if (!in_top[static_cast<size_t>(i)]) tb.push_back(std::exp(static_cast<double>(logits[i]) - t_max) / st);
    const auto m = std::min(tb.size(), static_cast<size_t>(std::floor(1.0 / a_max)) + 1);
    std::nth_element(tb.begin(), tb.begin() + static_cast<std::ptrdiff_t>(m - 1), tb.end());
    std::sort(tb.begin(), tb.begin() + static_cast<std::ptrdiff_t>(m));
    double left = 1.0, chi = 0.0;
    for (size_t j = 0; j < m && left > 0; ++j) {
      const double aj = std::min(a_max, left);
      chi += aj * aj / tb[j];
      left -= aj;
    }
    s.kld_bound = P_T * std::max(0.0, std::log(chi));
  }
  s.kld = kld;
  s.nll = q.lse - logits[ref.target];
  s.nll_base = -static_cast<double>(ref.logprob_target);
  s.p = std::exp(-s.nll);
  s.p_base = std::exp(-s.nll_base);
  s.p_top = std::exp(static_cast<double>(logits[ref.ids[0]]) - q.lse);
  s.p_base_top = std::exp(static_cast<double>(ref.logprobs[0]));
  s.same_top = q.argmax == ref.ids[0];
  return s;
}

// ---- top-k file ----

struct TopKWriter::Impl {
  AtomicFile file;
  TopKHeader h;
  int64_t written = 0;
  std::string buf;
  Impl(const std::string& path, const TopKHeader& hh) : file(path), h(hh) {}
};

TopKWriter::TopKWriter(const std::string& path, const TopKHeader& h) : impl_(std::make_unique<Impl>(path, h)) {
  std::string s(kMagic, sizeof(kMagic));
  put<uint32_t>(s, 1);
  put<uint32_t>(s, h.k);
  put<int64_t>(s, h.n_vocab);
  put<int64_t>(s, h.n_ctx);
  put<int64_t>(s, h.n_chunks);
  put<int64_t>(s, h.n_positions);
  put<uint64_t>(s, h.tokens_hash);
  put<uint64_t>(s, 0);
  impl_->file.write(s);
}

TopKWriter::~TopKWriter() = default;

void TopKWriter::add(const TopKRecord& r) {
  auto& I = *impl_;
  if (r.ids.size() != I.h.k || r.logprobs.size() != I.h.k) throw Error("top-k writer: record has the wrong k");
  if (I.written >= I.h.n_positions) throw Error("top-k writer: more records than the header says");
  I.buf.clear();
  put<int32_t>(I.buf, r.target);
  put<float>(I.buf, r.logprob_target);
  put<float>(I.buf, r.tail);
  for (TokenId id : r.ids) put<int32_t>(I.buf, id);
  for (float v : r.logprobs) put<float>(I.buf, v);
  I.file.write(I.buf);
  ++I.written;
}

void TopKWriter::commit() {
  if (impl_->written != impl_->h.n_positions)
    throw Error("top-k writer: " + std::to_string(impl_->written) + " records written, header says " +
                std::to_string(impl_->h.n_positions));
  impl_->file.commit();
}

struct TopKReader::Impl {
  std::ifstream in;
  std::string path;
  TopKHeader h;
  int64_t read = 0;
  std::string buf;
};

TopKReader::TopKReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  auto& I = *impl_;
  I.path = path;
  I.in.open(path, std::ios::binary);
  if (!I.in) fail_file(path, "cannot open");
  char hb[kHeaderBytes];
  if (!I.in.read(hb, kHeaderBytes)) fail_file(path, "too short for a top-k file header");
  if (std::memcmp(hb, kMagic, sizeof(kMagic)) != 0) fail_file(path, "not a QEval top-k file (bad magic)");
  const char* p = hb + 8;
  I.h.version = get<uint32_t>(p);
  I.h.k = get<uint32_t>(p);
  I.h.n_vocab = get<int64_t>(p);
  I.h.n_ctx = get<int64_t>(p);
  I.h.n_chunks = get<int64_t>(p);
  I.h.n_positions = get<int64_t>(p);
  I.h.tokens_hash = get<uint64_t>(p);
  if (I.h.version != 1) fail_file(path, "unsupported top-k file version " + std::to_string(I.h.version));
  if (I.h.k < 1 || I.h.n_vocab < 1 || static_cast<int64_t>(I.h.k) > I.h.n_vocab || I.h.n_positions < 0)
    fail_file(path, "corrupt top-k header");
  I.in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(I.in.tellg());
  const uint64_t want = kHeaderBytes + static_cast<uint64_t>(I.h.n_positions) * record_bytes(I.h.k);
  if (size != want)
    fail_file(path, "size " + std::to_string(size) + " bytes, expected " + std::to_string(want) + " for " +
                        std::to_string(I.h.n_positions) + " records of k=" + std::to_string(I.h.k));
  I.in.seekg(kHeaderBytes);
  I.buf.resize(record_bytes(I.h.k));
}

TopKReader::~TopKReader() = default;
const TopKHeader& TopKReader::header() const { return impl_->h; }

TopKRecord TopKReader::next() {
  auto& I = *impl_;
  if (I.read >= I.h.n_positions) fail_file(I.path, "read past the last record");
  if (!I.in.read(I.buf.data(), static_cast<std::streamsize>(I.buf.size()))) fail_file(I.path, "read error");
  ++I.read;
  const char* p = I.buf.data();
  TopKRecord r;
  r.target = get<int32_t>(p);
  r.logprob_target = get<float>(p);
  r.tail = get<float>(p);
  r.ids.resize(I.h.k);
  r.logprobs.resize(I.h.k);
  for (auto& id : r.ids) id = get<int32_t>(p);
  for (auto& v : r.logprobs) v = get<float>(p);
  return r;
}

// ---- aggregation ----

double percentile_sorted(const std::vector<double>& v, double q) {
  if (v.empty()) return 0.0;
  const double rank = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(v.size() - 1, lo + 1);
  const double f = rank - static_cast<double>(lo);
  return v[lo] + f * (v[hi] - v[lo]);
}

KldResult summarize_kld(const std::vector<TokenStats>& stats) {
  if (stats.empty()) throw Error("kld: no scored positions");
  KldResult r;
  const auto n = static_cast<int64_t>(stats.size());
  const double nd = static_cast<double>(n);
  Moments nll, nllb, diff, kld, dp, dp_top, dp2, dp_top2, bound;
  double cross = 0, bound_max = 0;
  int64_t same = 0;
  std::vector<double> kv, dv, dtv;
  kv.reserve(stats.size()), dv.reserve(stats.size()), dtv.reserve(stats.size());
  for (const auto& s : stats) {
    nll.add(s.nll), nllb.add(s.nll_base), diff.add(s.nll - s.nll_base);
    cross += s.nll * s.nll_base;
    kld.add(s.kld), kv.push_back(s.kld);
    bound.add(s.kld_bound), bound_max = std::max(bound_max, s.kld_bound);
    const double d = s.p - s.p_base, dt = s.p_top - s.p_base_top;
    dp.add(d), dp2.add(d * d), dv.push_back(d);
    dp_top.add(dt), dp_top2.add(dt * dt), dtv.push_back(dt);
    same += s.same_top ? 1 : 0;
  }
  r.scored_tokens = n;
  r.ppl_q = std::exp(nll.mean());
  r.ppl_q_err = r.ppl_q * nll.stderr_();
  r.ppl_base = std::exp(nllb.mean());
  r.ppl_base_err = r.ppl_base * nllb.stderr_();
  const double cov = cross / nd - nll.mean() * nllb.mean();
  const double var_q = nll.s2 / nd - nll.mean() * nll.mean(), var_b = nllb.s2 / nd - nllb.mean() * nllb.mean();
  r.cor_ln_ppl = (var_q > 0 && var_b > 0) ? cov / std::sqrt(var_q * var_b) : 1.0;
  r.ln_ratio = diff.mean();
  r.ln_ratio_err = diff.stderr_();
  r.ppl_ratio = std::exp(r.ln_ratio);
  r.ppl_ratio_err = r.ppl_ratio * r.ln_ratio_err;
  r.ppl_diff = r.ppl_q - r.ppl_base;
  {
    const double c = n > 1 ? cov / (nd - 1) : 0.0;
    const double v = r.ppl_q_err * r.ppl_q_err + r.ppl_base_err * r.ppl_base_err - 2 * r.ppl_q * r.ppl_base * c;
    r.ppl_diff_err = v > 0 ? std::sqrt(v) : 0.0;
  }
  r.kld = kld.mean();
  r.kld_err = kld.stderr_();
  r.kld_bound_mean = bound.mean();
  r.kld_bound_max = bound_max;
  r.kld_percentiles = percentiles(std::move(kv), false);
  auto rms = [&](const Moments& m2, double& val, double& err) {
    val = std::sqrt(m2.mean());
    // m2 holds d^2; its own second moment is mean(d^4).
    const double v4 = m2.s2 / nd - m2.mean() * m2.mean();
    err = (n > 1 && val > 0 && v4 > 0) ? std::sqrt(v4 / (nd - 1)) / (2 * val) : 0.0;
  };
  r.dp = dp.mean();
  r.dp_err = dp.stderr_();
  rms(dp2, r.dp_rms, r.dp_rms_err);
  r.dp_percentiles = percentiles(std::move(dv), true);
  r.dp_top = dp_top.mean();
  r.dp_top_err = dp_top.stderr_();
  rms(dp_top2, r.dp_top_rms, r.dp_top_rms_err);
  r.dp_top_percentiles = percentiles(std::move(dtv), true);
  r.same_top = static_cast<double>(same) / nd;
  r.same_top_err = n > 1 ? std::sqrt(r.same_top * (1 - r.same_top) / (nd - 1)) : 0.0;
  return r;
}

// ---- the whole comparison ----

KldResult kl_divergence(Engine* reference, Engine& model, const Tokenizer& tok, std::string_view text,
                        const KldOptions& o, bool keep_per_token) {
  const bool from_file = !o.reference_topk_path.empty();
  if (!from_file && reference == nullptr) throw Error("kld: a reference model or --reference-topk file is needed");
  if (from_file && o.save_topk > 0) throw Error("kld: --save-topk needs the reference model, not a top-k file");
  if (o.batch < 1) throw Error("kld: --batch must be >= 1");
  if (o.max_chunks == 0 || o.max_chunks < -1) throw Error("kld: --chunks must be positive");
  const int64_t n_ctx = o.n_ctx;
  const int64_t first = n_ctx / 2;
  const int64_t n_pos = n_ctx - 1 - first;
  if (n_pos < 1) throw Error("kld: --ctx must be at least 3");
  const int64_t V = model.vocab_size();
  if (reference && reference->vocab_size() != V)
    throw Error("kld: the models' vocabularies differ (" + std::to_string(reference->vocab_size()) + " vs " +
                std::to_string(V) + " tokens)");
  for (Engine* e : {reference, &model})
    if (e && n_ctx - 1 > e->context_length())
      throw Error("kld: --ctx " + std::to_string(n_ctx) + " exceeds the engine's context " + std::to_string(e->context_length()));
  if (o.save_topk > V) throw Error("kld: --save-topk k exceeds the vocabulary size " + std::to_string(V));

  EncodeOptions eo;
  eo.add_special = true;
  eo.parse_special = false;  // as llama-perplexity
  const auto tokens = tok.encode(text, eo);
  model.check_tokens(tokens);
  if (static_cast<int64_t>(tokens.size()) < 2 * n_ctx)
    throw Error("kld: the text has " + std::to_string(tokens.size()) + " tokens; at least 2*ctx = " +
                std::to_string(2 * n_ctx) + " are needed");
  int64_t n_chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
  if (o.max_chunks > 0) n_chunks = std::min(n_chunks, o.max_chunks);
  const bool bos = tok.adds_bos() && tok.bos_id() >= 0;
  std::vector<std::vector<TokenId>> windows(static_cast<size_t>(n_chunks));
  uint64_t hash = 1469598103934665603ull;
  for (int64_t c = 0; c < n_chunks; ++c) {
    auto& w = windows[static_cast<size_t>(c)];
    w.assign(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (bos) w[0] = tok.bos_id();
    for (TokenId t : w) {
      const auto le = static_cast<int32_t>(t);
      hash = fnv1a(hash, &le, sizeof(le));
    }
  }
  TopKHeader h;
  h.n_vocab = V, h.n_ctx = n_ctx, h.n_chunks = n_chunks, h.n_positions = n_chunks * n_pos, h.tokens_hash = hash;

  std::unique_ptr<TopKReader> reader;
  std::unique_ptr<TopKWriter> writer;
  if (from_file) {
    reader = std::make_unique<TopKReader>(o.reference_topk_path);
    const auto& fh = reader->header();
    auto mismatch = [&](const std::string& what, int64_t file, int64_t here) {
      fail_file(o.reference_topk_path, what + " is " + std::to_string(file) + " in the file but " + std::to_string(here) + " here");
    };
    if (fh.n_vocab != V) mismatch("n_vocab", fh.n_vocab, V);
    if (fh.n_ctx != n_ctx) mismatch("n_ctx", fh.n_ctx, n_ctx);
    if (fh.n_chunks != n_chunks) mismatch("the chunk count", fh.n_chunks, n_chunks);
    if (fh.tokens_hash != hash)
      fail_file(o.reference_topk_path, "was made from different tokens (text, tokenizer or chunking differ)");
  } else if (o.save_topk > 0) {
    h.k = static_cast<uint32_t>(o.save_topk);
    writer = std::make_unique<TopKWriter>(o.save_topk_path, h);
  }

  // Reference log-probabilities of a batch of chunks, kept under ~1 GiB.
  int64_t batch = o.batch;
  if (!from_file) {
    const int64_t per_chunk = n_pos * V * static_cast<int64_t>(sizeof(float));
    batch = std::clamp<int64_t>((int64_t{1} << 30) / per_chunk, 1, o.batch);
  }
  std::vector<float> ref_lp;
  std::vector<TopKRecord> records;
  std::vector<TokenStats> stats(static_cast<size_t>(n_chunks * n_pos));
  for (int64_t b = 0; b < n_chunks; b += batch) {
    const int64_t e = std::min(n_chunks, b + batch);
    std::vector<SequenceView> views;
    for (int64_t c = b; c < e; ++c)
      views.push_back({std::span<const TokenId>(windows[static_cast<size_t>(c)].data(), static_cast<size_t>(n_ctx - 1)), first});
    auto slot = [&](size_t seq, int64_t pos) { return static_cast<size_t>(seq) * static_cast<size_t>(n_pos) + static_cast<size_t>(pos - first); };
    auto target = [&](size_t seq, int64_t pos) { return windows[static_cast<size_t>(b) + seq][static_cast<size_t>(pos + 1)]; };
    if (from_file) {
      records.clear();
      for (int64_t i = 0; i < (e - b) * n_pos; ++i) records.push_back(reader->next());
    } else {
      ref_lp.resize(static_cast<size_t>((e - b) * n_pos * V));
      reference->evaluate(views, [&](size_t seq, int64_t pos, const float* logits) {
        if (pos < first || pos > n_ctx - 2) return;
        log_softmax(logits, V, ref_lp.data() + slot(seq, pos) * static_cast<size_t>(V));
      });
      if (writer)
        for (size_t seq = 0; seq < views.size(); ++seq)
          for (int64_t pos = first; pos <= n_ctx - 2; ++pos)
            writer->add(make_topk_record(ref_lp.data() + slot(seq, pos) * static_cast<size_t>(V), V, o.save_topk, target(seq, pos)));
    }
    model.evaluate(views, [&](size_t seq, int64_t pos, const float* logits) {
      if (pos < first || pos > n_ctx - 2) return;
      const size_t i = slot(seq, pos);
      TokenStats& s = stats[static_cast<size_t>(b * n_pos) + i];
      if (from_file) {
        if (records[i].target != target(seq, pos)) fail_file(o.reference_topk_path, "record target does not match the text");
        s = token_stats_topk(records[i], logits, V);
      } else {
        s = token_stats_full(ref_lp.data() + i * static_cast<size_t>(V), logits, V, target(seq, pos));
      }
    });
    if (o.progress) o.progress(e, n_chunks);
  }
  if (writer) writer->commit();
  KldResult r = summarize_kld(stats);
  r.n_ctx = n_ctx;
  r.chunks = n_chunks;
  r.text_tokens = static_cast<int64_t>(tokens.size());
  r.topk_reference = from_file;
  r.topk = from_file ? static_cast<int64_t>(reader->header().k) : 0;
  if (keep_per_token) r.per_token = std::move(stats);
  return r;
}

std::string format_kld_report(const KldResult& r) {
  std::string s;
  auto line = [&](const std::string& l) { s += l + "\n"; };
  auto pct_label = [](const std::string& name, const char* what) {
    if (name == "max") return fmt::format("Maximum {}", what);
    if (name == "min") return fmt::format("Minimum {}", what);
    if (name == "median") return fmt::format("Median  {}", what);
    const double v = std::stod(name);
    return fmt::format("{:>4.1f}%   {}", v, what);
  };
  line("====== Perplexity statistics ======");
  line(fmt::format("Mean PPL(Q)                   : {:10.6f} ± {:10.6f}", r.ppl_q, r.ppl_q_err));
  line(fmt::format("Mean PPL(base)                : {:10.6f} ± {:10.6f}", r.ppl_base, r.ppl_base_err));
  line(fmt::format("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2f}%", 100 * r.cor_ln_ppl));
  line(fmt::format("Mean ln(PPL(Q)/PPL(base))     : {:10.6f} ± {:10.6f}", r.ln_ratio, r.ln_ratio_err));
  line(fmt::format("Mean PPL(Q)/PPL(base)         : {:10.6f} ± {:10.6f}", r.ppl_ratio, r.ppl_ratio_err));
  line(fmt::format("Mean PPL(Q)-PPL(base)         : {:10.6f} ± {:10.6f}", r.ppl_diff, r.ppl_diff_err));
  line("");
  line(r.topk_reference ? fmt::format("====== KL divergence statistics (top-{} + tail bucket: a lower bound) ======", r.topk)
                        : std::string("====== KL divergence statistics ======"));
  line(fmt::format("Mean    KLD: {:10.6f} ± {:10.6f}", r.kld, r.kld_err));
  for (const auto& [name, v] : r.kld_percentiles) line(fmt::format("{}: {:10.6f}", pct_label(name, "KLD"), v));
  if (r.topk_reference)
    line(fmt::format("Top-k gap bound: true KLD - reported KLD <= {:.6f} on average (max {:.6f} at one position)",
                     r.kld_bound_mean, r.kld_bound_max));
  line("");
  line("====== Token probability statistics ======");
  line(fmt::format("Mean    Δp: {:6.3f} ± {:5.3f} %", 100 * r.dp, 100 * r.dp_err));
  for (const auto& [name, v] : r.dp_percentiles) line(fmt::format("{}: {:6.3f}%", pct_label(name, "Δp"), 100 * v));
  line(fmt::format("RMS Δp    : {:6.3f} ± {:5.3f} %", 100 * r.dp_rms, 100 * r.dp_rms_err));
  line(fmt::format("Same top p: {:6.3f} ± {:5.3f} %", 100 * r.same_top, 100 * r.same_top_err));
  line("");
  line("====== Δp at the reference's top token (QEval extra: p_Q(top_ref) - p_ref(top_ref)) ======");
  line(fmt::format("Mean    Δp: {:6.3f} ± {:5.3f} %", 100 * r.dp_top, 100 * r.dp_top_err));
  for (const auto& [name, v] : r.dp_top_percentiles) line(fmt::format("{}: {:6.3f}%", pct_label(name, "Δp"), 100 * v));
  line(fmt::format("RMS Δp    : {:6.3f} ± {:5.3f} %", 100 * r.dp_top_rms, 100 * r.dp_top_rms_err));
  return s;
}

}  // namespace qeval
