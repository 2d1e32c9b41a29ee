#include "qeval/engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "qeval/util/error.h"

namespace qeval {

std::string_view perplexity_method_name(PerplexityMethod m) {
  switch (m) {
    case PerplexityMethod::LlamaCpp: return "llamacpp";
    case PerplexityMethod::GPTQ: return "gptq";
    case PerplexityMethod::Rolling: return "rolling";
  }
  return "?";
}

PerplexityMethod parse_perplexity_method(std::string_view s) {
  if (s == "llamacpp") return PerplexityMethod::LlamaCpp;
  if (s == "gptq") return PerplexityMethod::GPTQ;
  if (s == "rolling") return PerplexityMethod::Rolling;
  throw Error("unknown perplexity method '" + std::string(s) + "' (expected llamacpp, gptq or rolling)");
}

namespace {

struct Accum {
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  void add(double logprob) {
    nll -= logprob;
    nll2 += logprob * logprob;
    ++count;
  }
  double ppl() const { return count ? std::exp(nll / static_cast<double>(count)) : 0.0; }
};

// Scores windows in batches of `batch`, calling after(i) when window i is done.
void score_windows(Engine& engine, std::vector<ScoreRequest>& windows, int64_t batch, Accum& acc,
                   const std::function<void(size_t)>& after) {
  for (size_t b = 0; b < windows.size(); b += static_cast<size_t>(batch)) {
    const size_t e = std::min(windows.size(), b + static_cast<size_t>(batch));
    const auto res = engine.score(std::span<const ScoreRequest>(windows.data() + b, e - b));
    for (size_t i = 0; i < res.size(); ++i) {
      for (double lp : res[i].logprobs) acc.add(lp);
      after(b + i);
    }
  }
}

void check_ctx(const Engine& engine, int64_t n_ctx, int64_t needed) {
  if (n_ctx < 2) throw Error("--ctx must be at least 2");
  if (needed > engine.context_length())
    throw Error("--ctx " + std::to_string(n_ctx) + " needs " + std::to_string(needed) + " positions; the model has " +
                std::to_string(engine.context_length()));
}

std::vector<std::string_view> split_documents(std::string_view text) {
  std::vector<std::string_view> docs;
  size_t pos = 0, doc_start = std::string_view::npos, doc_end = 0;
  auto blank = [](std::string_view line) {
    return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
  };
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(pos, nl - pos);
    if (blank(line)) {
      if (doc_start != std::string_view::npos) docs.push_back(text.substr(doc_start, doc_end - doc_start));
      doc_start = std::string_view::npos;
    } else {
      if (doc_start == std::string_view::npos) doc_start = pos;
      doc_end = nl;
    }
    pos = nl + 1;
  }
  if (doc_start != std::string_view::npos) docs.push_back(text.substr(doc_start, doc_end - doc_start));
  return docs;
}

// Python's len(re.split(r"\s+", doc)).
int64_t count_words(std::string_view doc) {
  int64_t n = 1;
  bool in_space = false;
  for (char c : doc) {
    const bool sp = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    if (sp && !in_space) ++n;
    in_space = sp;
  }
  return n;
}

}  // namespace

PerplexityResult perplexity(Engine& engine, const Tokenizer& tok, std::string_view text, const PerplexityOptions& o) {
  if (o.batch < 1) throw Error("--batch must be >= 1");
  if (o.max_chunks == 0 || o.max_chunks < -1) throw Error("--chunks must be positive");
  PerplexityResult r;
  r.method = o.method;
  r.n_ctx = o.n_ctx;
  Accum acc;
  const int64_t n_ctx = o.n_ctx;

  if (o.method == PerplexityMethod::LlamaCpp || o.method == PerplexityMethod::GPTQ) {
    const bool llama = o.method == PerplexityMethod::LlamaCpp;
    check_ctx(engine, n_ctx, n_ctx - 1);
    EncodeOptions eo;
    eo.add_special = true;
    eo.parse_special = !llama;  // llama-perplexity tokenizes with parse_special = false
    const auto tokens = tok.encode(text, eo);
    r.text_tokens = static_cast<int64_t>(tokens.size());
    engine.check_tokens(tokens);
    int64_t n_chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
    if (llama && static_cast<int64_t>(tokens.size()) < 2 * n_ctx)
      throw Error("the text has " + std::to_string(tokens.size()) + " tokens; llamacpp perplexity needs at least 2*ctx = " +
                  std::to_string(2 * n_ctx));
    if (n_chunks == 0) throw Error("the text has " + std::to_string(tokens.size()) + " tokens, fewer than --ctx " + std::to_string(n_ctx));
    if (o.max_chunks > 0) n_chunks = std::min(n_chunks, o.max_chunks);
    const int64_t first = llama ? n_ctx / 2 : 0;
    const bool bos = llama && tok.adds_bos() && tok.bos_id() >= 0;
    std::vector<ScoreRequest> windows(static_cast<size_t>(n_chunks));
    for (int64_t i = 0; i < n_chunks; ++i) {
      auto& w = windows[static_cast<size_t>(i)];
      w.tokens.assign(tokens.begin() + i * n_ctx, tokens.begin() + (i + 1) * n_ctx);
      if (bos) w.tokens[0] = tok.bos_id();
      w.score_from = first + 1;
    }
    score_windows(engine, windows, o.batch, acc, [&](size_t i) {
      if (o.progress) o.progress(static_cast<int64_t>(i) + 1, n_chunks, acc.ppl());
    });
    r.chunks = n_chunks;
  } else {
    check_ctx(engine, n_ctx, n_ctx);
    const TokenId prefix = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
    if (prefix < 0) throw Error("rolling perplexity needs a BOS or EOS token to condition the first window on");
    auto docs = split_documents(text);
    if (docs.empty()) throw Error("the text has no documents (paragraphs separated by blank lines)");
    if (o.max_chunks > 0 && static_cast<int64_t>(docs.size()) > o.max_chunks) docs.resize(static_cast<size_t>(o.max_chunks));
    EncodeOptions eo;
    eo.add_special = false;
    eo.parse_special = false;
    std::vector<ScoreRequest> windows;
    std::vector<size_t> doc_of_window;
    for (size_t d = 0; d < docs.size(); ++d) {
      const auto t = tok.encode(docs[d], eo);
      engine.check_tokens(t);
      r.text_tokens += static_cast<int64_t>(t.size());
      r.words += count_words(docs[d]);
      r.bytes += static_cast<int64_t>(docs[d].size());
      const int64_t n = static_cast<int64_t>(t.size());
      if (n == 0) continue;
      // lm-eval get_rolling_token_windows with context_len = 1, as disjoint windows.
      const int64_t first_len = std::min(n_ctx, n);
      ScoreRequest w;
      w.tokens.push_back(prefix);
      w.tokens.insert(w.tokens.end(), t.begin(), t.begin() + first_len);
      w.score_from = 1;
      windows.push_back(std::move(w));
      doc_of_window.push_back(d);
      int64_t predicted = first_len;
      while (predicted < n) {
        const int64_t pred_len = std::min(n - predicted, n_ctx);
        const int64_t end = predicted + pred_len;
        ScoreRequest x;
        x.tokens.assign(t.begin() + (end - n_ctx - 1), t.begin() + end);
        x.score_from = static_cast<int64_t>(x.tokens.size()) - pred_len;
        windows.push_back(std::move(x));
        doc_of_window.push_back(d);
        predicted = end;
      }
    }
    score_windows(engine, windows, o.batch, acc, [&](size_t i) {
      const bool last_of_doc = i + 1 == windows.size() || doc_of_window[i + 1] != doc_of_window[i];
      if (o.progress && last_of_doc)
        o.progress(static_cast<int64_t>(doc_of_window[i]) + 1, static_cast<int64_t>(docs.size()), acc.ppl());
    });
    r.chunks = static_cast<int64_t>(docs.size());
    const double ll = -acc.nll;
    r.word_ppl = std::exp(-ll / static_cast<double>(r.words));
    r.byte_ppl = std::exp(-ll / static_cast<double>(r.bytes));
    r.bits_per_byte = -ll / static_cast<double>(r.bytes) / std::numbers::ln2;
  }
  r.scored_tokens = acc.count;
  r.nll_sum = acc.nll;
  if (acc.count == 0) throw Error("no tokens were scored");
  const double n = static_cast<double>(acc.count);
  const double mean = acc.nll / n;
  r.ppl = std::exp(mean);
  if (o.method == PerplexityMethod::LlamaCpp && acc.count > 1) {
    const double var = acc.nll2 / n - mean * mean;
    r.ppl_err = var > 0 ? std::sqrt(var / (n - 1)) * r.ppl : 0.0;
  }
  return r;
}

}  // namespace qeval
