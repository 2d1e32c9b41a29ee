#include "qeval/quant/calibration.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "qeval/util/error.h"
#include "qeval/util/log.h"

namespace qeval::quant {

namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Rolling polynomial hash of every kShingleBytes-byte window of s (mod 2^64).
template <class F>
void for_each_shingle(std::string_view s, F&& f) {
  if (s.size() < kShingleBytes) return;
  constexpr uint64_t B = 1099511628211ULL;
  uint64_t pw = 1;
  for (size_t i = 0; i + 1 < kShingleBytes; ++i) pw *= B;
  uint64_t h = 0;
  for (size_t i = 0; i < kShingleBytes; ++i) h = h * B + static_cast<uint8_t>(s[i]) + 1;
  f(h);
  for (size_t i = kShingleBytes; i < s.size(); ++i) {
    h -= (static_cast<uint8_t>(s[i - kShingleBytes]) + 1) * pw;
    h = h * B + static_cast<uint8_t>(s[i]) + 1;
    f(h);
  }
}

}  // namespace

Calibration make_calibration(const Tokenizer& tok, std::string_view text, const CalibrationOptions& opts,
                             int64_t max_context) {
  if (opts.samples <= 0) throw Error("calibration: samples must be positive, got " + std::to_string(opts.samples));
  if (opts.seqlen < 2) throw Error("calibration: seqlen must be at least 2, got " + std::to_string(opts.seqlen));
  Calibration c;
  c.seed = opts.seed;
  c.seqlen = max_context > 0 ? std::min(opts.seqlen, max_context) : opts.seqlen;
  const std::vector<TokenId> ids = tok.encode(text);
  c.text_tokens = static_cast<int64_t>(ids.size());
  if (c.text_tokens < c.seqlen)
    throw Error("calibration: text has " + std::to_string(c.text_tokens) + " tokens, fewer than seqlen " +
                std::to_string(c.seqlen));
  const uint64_t span = static_cast<uint64_t>(c.text_tokens - c.seqlen) + 1;
  uint64_t state = opts.seed;
  for (int64_t i = 0; i < opts.samples; ++i) {
    const int64_t off = static_cast<int64_t>(splitmix(state) % span);
    c.offsets.push_back(off);
    c.samples.emplace_back(ids.begin() + off, ids.begin() + off + c.seqlen);
  }
  return c;
}

Calibration load_calibration(const std::string& path, const Tokenizer& tok, const CalibrationOptions& opts,
                             int64_t max_context) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_file(path, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  Calibration c = make_calibration(tok, ss.str(), opts, max_context);
  c.source = path;
  return c;
}

OverlapReport check_overlap(const Calibration& calib, const Tokenizer& tok, std::string_view eval_text, bool warn_user) {
  std::unordered_set<uint64_t> mine;
  for (const auto& s : calib.samples) for_each_shingle(tok.decode(s), [&](uint64_t h) { mine.insert(h); });
  OverlapReport r;
  r.calib_shingles = static_cast<int64_t>(mine.size());
  std::unordered_set<uint64_t> shared;
  for_each_shingle(eval_text, [&](uint64_t h) {
    if (mine.count(h)) shared.insert(h);
  });
  r.shared_shingles = static_cast<int64_t>(shared.size());
  r.fraction = r.calib_shingles > 0 ? static_cast<double>(r.shared_shingles) / static_cast<double>(r.calib_shingles) : 0.0;
  if (warn_user && r.calib_shingles > 0 && r.fraction >= kOverlapWarnFraction) {
    r.warned = true;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * r.fraction);
    warn("calibration text overlaps the evaluation text: " + std::string(buf) + " of its 64-byte shingles (" +
         std::to_string(r.shared_shingles) + " of " + std::to_string(r.calib_shingles) +
         ") occur in the evaluation text; results may be optimistic");
  }
  return r;
}

std::vector<float> LinearStats::mean_abs() const {
  std::vector<float> m(sum_abs.size(), 0.0f);
  if (tokens > 0)
    for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(sum_abs[i] / static_cast<double>(tokens));
  return m;
}

CalibrationCollector::CalibrationCollector(bool hessians, std::function<bool(const LinearId&)> select)
    : hessians_(hessians), select_(std::move(select)) {}

void CalibrationCollector::linear_input(const LinearId& id, float* x, int64_t rows, int64_t cols) {
  if (select_ && !select_(id)) return;
  LinearStats& s = stats_[id];
  if (s.in_features == 0) {
    s.in_features = cols;
    s.absmax.assign(static_cast<size_t>(cols), 0.0f);
    s.sum_abs.assign(static_cast<size_t>(cols), 0.0);
    if (hessians_) s.hessian = std::make_unique<HessianAccumulator>(cols);
  } else if (s.in_features != cols) {
    throw Error("calibration: " + id.name() + " input width changed");
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const float a = std::fabs(row[j]);
      s.absmax[static_cast<size_t>(j)] = std::max(s.absmax[static_cast<size_t>(j)], a);
      s.sum_abs[static_cast<size_t>(j)] += a;
    }
  }
  s.tokens += rows;
  if (s.hessian) s.hessian->add({x, static_cast<size_t>(rows * cols)}, rows);
}

const LinearStats* CalibrationCollector::find(const LinearId& id) const {
  auto it = stats_.find(id);
  return it == stats_.end() ? nullptr : &it->second;
}

void run_calibration_forward(Engine& engine, const Calibration& calib, ForwardHooks& hooks, int64_t batch) {
  ForwardHooks* prev = engine.hooks();
  engine.set_hooks(&hooks);
  try {
    const size_t b = static_cast<size_t>(std::max<int64_t>(1, batch));
    for (size_t i = 0; i < calib.samples.size(); i += b) {
      std::vector<SequenceView> views;
      for (size_t j = i; j < std::min(calib.samples.size(), i + b); ++j)
        views.push_back({calib.samples[j], static_cast<int64_t>(calib.samples[j].size())});
      engine.evaluate(views, [](size_t, int64_t, const float*) {});
    }
  } catch (...) {
    engine.set_hooks(prev);
    throw;
  }
  engine.set_hooks(prev);
}

}  // namespace qeval::quant
