#include "qeval/eval/engine_model.h"

#include <algorithm>
#include <map>
#include <span>

#include "qeval/engine/generate.h"
#include "qeval/engine/ops.h"
#include "qeval/util/error.h"

namespace qeval::eval {
namespace {

struct PrefixLess {
  bool operator()(std::span<const TokenId> a, std::span<const TokenId> b) const {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
  }
};

}  // namespace

EngineLanguageModel::EngineLanguageModel(Engine& engine, const Tokenizer& tokenizer, EngineModelOptions options)
    : engine_(engine), tok_(tokenizer), opts_(std::move(options)) {
  if (opts_.batch == 0) opts_.batch = 1;
}

TokenId EngineLanguageModel::prefix_token() const {
  const TokenId b = tok_.bos_id();
  return b >= 0 ? b : tok_.eos_id();
}

std::vector<TokenId> EngineLanguageModel::encode(const std::string& text) const {
  return tok_.encode(text, {.add_special = false, .parse_special = true});
}

ScoreRequest EngineLanguageModel::loglikelihood_tokens(const std::string& context_in,
                                                       const std::string& continuation_in) const {
  std::string context = context_in, continuation = continuation_in;
  // lm-eval's _encode_pair: trailing whitespace of the context goes with the continuation.
  size_t keep = context.size();
  while (keep > 0 && (context[keep - 1] == ' ' || context[keep - 1] == '\t' || context[keep - 1] == '\n' ||
                      context[keep - 1] == '\r'))
    --keep;
  if (keep < context.size()) {
    continuation = context.substr(keep) + continuation;
    context.resize(keep);
  }
  std::vector<TokenId> ctx, cont;
  if (context.empty()) {
    ctx = {prefix_token()};
    cont = encode(continuation);
  } else {
    ctx = encode(context);
    const std::vector<TokenId> whole = encode(context + continuation);
    if (whole.size() > ctx.size() && std::equal(ctx.begin(), ctx.end(), whole.begin())) {
      cont.assign(whole.begin() + static_cast<std::ptrdiff_t>(ctx.size()), whole.end());
    } else {
      cont = encode(continuation);  // the split point moved: encode the parts separately
    }
    if (tok_.adds_bos() && tok_.bos_id() >= 0) ctx.insert(ctx.begin(), tok_.bos_id());
  }
  if (cont.empty()) throw Error("loglikelihood: the continuation '" + continuation_in + "' encodes to no tokens");
  ScoreRequest r;
  r.tokens = ctx;
  r.tokens.insert(r.tokens.end(), cont.begin(), cont.end());
  // Left-truncate to context_length + 1 tokens (the last one is never fed to the model).
  const size_t max_len = static_cast<size_t>(engine_.context_length()) + 1;
  if (r.tokens.size() > max_len) r.tokens.erase(r.tokens.begin(), r.tokens.end() - static_cast<std::ptrdiff_t>(max_len));
  r.score_from = std::max<int64_t>(1, static_cast<int64_t>(r.tokens.size()) - static_cast<int64_t>(cont.size()));
  return r;
}

std::vector<ScoreRequest> EngineLanguageModel::rolling_windows(const std::string& text) const {
  const std::vector<TokenId> t = encode(text);
  std::vector<ScoreRequest> out;
  if (t.empty()) return out;
  const size_t n = t.size();
  const size_t max_seq = static_cast<size_t>(engine_.context_length());
  // lm-eval get_rolling_token_windows(prefix_token, max_seq_len, context_len = 1) + make_disjoint_window.
  const size_t first = std::min(max_seq, n);
  ScoreRequest w0;
  w0.tokens.push_back(prefix_token());
  w0.tokens.insert(w0.tokens.end(), t.begin(), t.begin() + static_cast<std::ptrdiff_t>(first));
  w0.score_from = 1;
  out.push_back(std::move(w0));
  size_t predicted = first;
  while (predicted < n) {
    const size_t pred = std::min(n - predicted, max_seq);
    const size_t end = predicted + pred;
    ScoreRequest w;
    w.tokens.assign(t.begin() + static_cast<std::ptrdiff_t>(end - max_seq - 1), t.begin() + static_cast<std::ptrdiff_t>(end));
    w.score_from = static_cast<int64_t>(w.tokens.size() - pred);
    out.push_back(std::move(w));
    predicted = end;
  }
  return out;
}

std::vector<ScoreResult> EngineLanguageModel::score_batched(const std::vector<ScoreRequest>& reqs, size_t& done,
                                                            size_t total) {
  std::vector<ScoreResult> out;
  out.reserve(reqs.size());
  for (size_t i = 0; i < reqs.size(); i += opts_.batch) {
    const size_t m = std::min(opts_.batch, reqs.size() - i);
    auto r = engine_.score(std::span<const ScoreRequest>(reqs.data() + i, m));
    for (auto& x : r) out.push_back(std::move(x));
    done += m;
    if (opts_.progress) opts_.progress(done, total);
  }
  return out;
}

std::vector<ScoreResult> EngineLanguageModel::score_shared_prefix(const std::vector<const ScoreRequest*>& members) {
  const ScoreRequest& first = *members.front();
  const auto prefix = std::span<const TokenId>(first.tokens).first(static_cast<size_t>(first.score_from));
  size_t longest = 0;
  for (const ScoreRequest* m : members) longest = std::max(longest, m->tokens.size());
  // Positions fed: every token but a member's last one.
  const auto capacity = static_cast<int64_t>(longest - 1);
  if (cache_.n_layers() == 0) cache_ = engine_.new_cache(capacity);
  else cache_.reserve(capacity);
  cache_.clear();
  KVCache& cache = cache_;
  const auto last = engine_.append(cache, prefix);
  const std::vector<float> prefix_logits(last.begin(), last.end());  // predicts each member's first token
  const int64_t vocab = engine_.vocab_size();
  auto score_token = [vocab](const float* logits, TokenId t, ScoreResult& r) {
    r.logprobs.push_back(static_cast<double>(logits[t]) - ops::logsumexp(logits, vocab));
    r.greedy.push_back((std::max_element(logits, logits + vocab) - logits) == t ? 1 : 0);
  };
  std::vector<ScoreResult> out(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    const std::vector<TokenId>& t = members[i]->tokens;
    const size_t from = static_cast<size_t>(first.score_from);
    engine_.check_tokens(t);
    score_token(prefix_logits.data(), t[from], out[i]);
    for (size_t p = from; p + 1 < t.size(); ++p) {
      const auto logits = engine_.append(cache, std::span<const TokenId>(&t[p], 1));
      score_token(logits.data(), t[p + 1], out[i]);
    }
    cache.truncate(static_cast<int64_t>(from));
  }
  return out;
}

std::vector<task::LoglikelihoodResult> EngineLanguageModel::loglikelihood(const std::vector<task::Request>& requests) {
  std::vector<ScoreRequest> reqs;
  reqs.reserve(requests.size());
  for (const auto& q : requests) reqs.push_back(loglikelihood_tokens(q.context, q.continuation));
  std::vector<ScoreResult> scored(reqs.size());
  // Group the requests by their unscored prefix; groups of one go through the batched path.
  std::vector<std::vector<size_t>> shared;
  std::vector<size_t> single;
  if (opts_.share_context) {
    std::map<std::span<const TokenId>, size_t, PrefixLess> group_of;
    for (size_t i = 0; i < reqs.size(); ++i) {
      const auto prefix = std::span<const TokenId>(reqs[i].tokens).first(static_cast<size_t>(reqs[i].score_from));
      auto [it, fresh] = group_of.try_emplace(prefix, shared.size());
      if (fresh) shared.emplace_back();
      shared[it->second].push_back(i);
    }
    std::vector<std::vector<size_t>> kept;
    for (auto& g : shared) {
      if (g.size() == 1) single.push_back(g.front());
      else kept.push_back(std::move(g));
    }
    shared = std::move(kept);
    std::sort(single.begin(), single.end());
  } else {
    for (size_t i = 0; i < reqs.size(); ++i) single.push_back(i);
  }
  size_t done = 0;
  for (const auto& g : shared) {
    std::vector<const ScoreRequest*> members;
    for (size_t i : g) members.push_back(&reqs[i]);
    auto r = score_shared_prefix(members);
    for (size_t k = 0; k < g.size(); ++k) scored[g[k]] = std::move(r[k]);
    done += g.size();
    if (opts_.progress) opts_.progress(done, reqs.size());
  }
  std::vector<ScoreRequest> rest;
  rest.reserve(single.size());
  for (size_t i : single) rest.push_back(std::move(reqs[i]));
  auto r = score_batched(rest, done, reqs.size());
  for (size_t k = 0; k < single.size(); ++k) scored[single[k]] = std::move(r[k]);
  std::vector<task::LoglikelihoodResult> out(requests.size());
  for (size_t i = 0; i < scored.size(); ++i) {
    out[i].logprob = scored[i].sum();
    out[i].is_greedy = scored[i].all_greedy();
    out[i].n_tokens = static_cast<int64_t>(scored[i].logprobs.size());
  }
  return out;
}

std::vector<task::RollingResult> EngineLanguageModel::loglikelihood_rolling(const std::vector<task::Request>& requests) {
  std::vector<ScoreRequest> windows;
  std::vector<size_t> owner;
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string text = requests[i].context + requests[i].continuation;
    for (auto& w : rolling_windows(text)) {
      windows.push_back(std::move(w));
      owner.push_back(i);
    }
  }
  size_t done = 0;
  const auto scored = score_batched(windows, done, windows.size());
  std::vector<task::RollingResult> out(requests.size());
  for (size_t k = 0; k < scored.size(); ++k) {
    out[owner[k]].logprob += scored[k].sum();
    out[owner[k]].n_tokens += static_cast<int64_t>(scored[k].logprobs.size());
  }
  return out;
}

std::vector<std::string> EngineLanguageModel::generate_until(const std::vector<task::Request>& requests) {
  std::vector<std::string> out;
  out.reserve(requests.size());
  for (const auto& q : requests) {
    const int64_t max_gen = q.max_gen_toks > 0 ? q.max_gen_toks : 256;
    std::vector<TokenId> prompt = encode(q.context);
    if (tok_.adds_bos() && tok_.bos_id() >= 0) prompt.insert(prompt.begin(), tok_.bos_id());
    if (prompt.empty()) prompt.push_back(prefix_token());
    const int64_t n_ctx = engine_.context_length();
    const int64_t room = std::max<int64_t>(1, n_ctx - max_gen);
    if (static_cast<int64_t>(prompt.size()) > room)
      prompt.erase(prompt.begin(), prompt.end() - static_cast<std::ptrdiff_t>(room));
    GenerationOptions g;
    g.max_tokens = std::max<int64_t>(1, std::min<int64_t>(max_gen, n_ctx - static_cast<int64_t>(prompt.size())));
    for (const auto& s : q.until)
      if (!s.empty()) g.stop.push_back(s);
    g.stop_at_eos = true;
    out.push_back(generate(engine_, &tok_, prompt, g).text);
    if (opts_.progress) opts_.progress(out.size(), requests.size());
  }
  return out;
}

}  // namespace qeval::eval
