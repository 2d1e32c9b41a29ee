// qeval logits MODEL (--tokens 1,2,3 | --text TEXT) [--top K] [--json]: the model's logits (or
// top-k log-probabilities) at every position of one sequence.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "qeval/engine/engine.h"
#include "qeval/engine/ops.h"
#include "qeval/io/model.h"
#include "qeval/quant/export.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct LogitsArgs {
  std::string model, tokens, text;
  int top = 0;
  bool json = false;
  int threads = 0;
  bool ggml_compat = false, kv_f16 = false;
};

std::vector<TokenId> parse_ids(const std::string& s) {
  std::vector<TokenId> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < INT32_MIN || v > INT32_MAX)
      throw Error("--tokens: '" + item + "' is not a token id (expected comma-separated integers)");
    out.push_back(static_cast<TokenId>(v));
  }
  if (out.empty()) throw Error("--tokens: no token ids given");
  return out;
}

int run(const LogitsArgs& a) {
  if (a.tokens.empty() == a.text.empty()) throw Error("give exactly one of --tokens or --text");
  if (a.top < 0) throw Error("--top must be >= 0");
  const Model model = quant::load_any_model(a.model);  // packed directories run on the packed kernels
  std::unique_ptr<Tokenizer> tok;
  std::vector<TokenId> ids;
  if (!a.text.empty()) {
    tok = load_tokenizer(model);
    ids = tok->encode(a.text);
    if (ids.empty()) throw Error("--text: the text gives no tokens");
  } else {
    ids = parse_ids(a.tokens);
    try {
      tok = load_tokenizer(model);
    } catch (const Error&) {
      // token pieces are optional for --tokens
    }
  }
  Engine engine(model, {.threads = a.threads, .ggml_compat = a.ggml_compat, .kv_f16 = a.kv_f16});
  engine.check_tokens(ids);
  if (static_cast<int64_t>(ids.size()) > engine.context_length())
    throw Error("sequence of " + std::to_string(ids.size()) + " tokens is longer than the context (" +
                std::to_string(engine.context_length()) + ")");
  const int64_t V = engine.vocab_size();
  const auto logits = engine.logits(ids);
  auto piece = [&](TokenId id) { return tok ? tok->token_text(id) : std::string(); };

  nlohmann::json j;
  if (a.json) {
    j["model"] = a.model;
    j["n_vocab"] = V;
    j["tokens"] = ids;
    j["positions"] = nlohmann::json::array();
  }
  std::vector<int32_t> order(static_cast<size_t>(V));
  for (size_t p = 0; p < ids.size(); ++p) {
    const float* row = logits.data() + p * static_cast<size_t>(V);
    nlohmann::json pj;
    if (a.top == 0) {
      if (a.json) {
        pj["logits"] = std::vector<float>(row, row + V);
      } else {
        std::string line = fmt::format("[{}] token {}:", p, ids[p]);
        for (int64_t v = 0; v < V; ++v) line += fmt::format(" {:.9g}", row[v]);
        std::puts(line.c_str());
      }
    } else {
      const double lse = ops::logsumexp(row, V);
      std::iota(order.begin(), order.end(), 0);
      const int k = static_cast<int>(std::min<int64_t>(a.top, V));
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int32_t x, int32_t y) { return row[x] > row[y] || (row[x] == row[y] && x < y); });
      if (a.json) {
        pj["top"] = nlohmann::json::array();
        for (int i = 0; i < k; ++i)
          pj["top"].push_back({{"id", order[static_cast<size_t>(i)]}, {"logprob", row[order[static_cast<size_t>(i)]] - lse},
                               {"piece", piece(order[static_cast<size_t>(i)])}});
      } else {
        std::string line = fmt::format("[{}] {} {:?} ->", p, ids[p], piece(ids[p]));
        for (int i = 0; i < k; ++i) {
          const int32_t id = order[static_cast<size_t>(i)];
          line += fmt::format("  {} {:?} {:.4f}", id, piece(id), row[id] - lse);
        }
        std::puts(line.c_str());
      }
    }
    if (a.json) {
      pj["pos"] = p;
      pj["token"] = ids[p];
      j["positions"].push_back(std::move(pj));
    }
  }
  if (a.json) std::puts(j.dump().c_str());
  return 0;
}

std::function<int()> setup(CLI::App& app) {
  auto a = std::make_shared<LogitsArgs>();
  app.add_option("model", a->model, "GGUF file or HF directory")->required();
  app.add_option("--tokens", a->tokens, "comma-separated token ids (give BOS yourself)");
  app.add_option("--text", a->text, "text to tokenize (the tokenizer adds BOS as configured)");
  app.add_option("--top", a->top, "print the top K log-probabilities per position instead of raw logits");
  app.add_flag("--json", a->json, "JSON output");
  app.add_option("--threads", a->threads, "threads (default: hardware concurrency)");
  app.add_flag("--ggml-compat", a->ggml_compat, "round activations like llama.cpp for F16/quantized weights");
  app.add_flag("--kv-f16", a->kv_f16, "round K/V to F16 like llama.cpp's default KV cache");
  return [a] { return run(*a); };
}

QEVAL_COMMAND("logits", "Logits or top-k log-probabilities at every position of a sequence", setup);

}  // namespace
}  // namespace qeval::cli
