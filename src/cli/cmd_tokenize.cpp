// qeval tokenize MODEL TEXT: the token ids and pieces of a text, printed like llama-tokenize.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/command.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  bool ids_only = false;
  bool no_bos = false;
  bool no_parse_special = false;
  bool json = false;
};

void print(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

int run_tokenize(const TokenizeOptions& o) {
  std::string text = o.text;
  if (!o.file.empty()) {
    if (!o.text.empty()) fail("give either TEXT or --file, not both");
    std::ifstream in(o.file, std::ios::binary);
    if (!in) fail_file(o.file, "cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const auto tok = load_tokenizer(o.model);
  EncodeOptions opts;
  opts.add_special = !o.no_bos;
  opts.parse_special = !o.no_parse_special;
  const std::vector<TokenId> ids = tok->encode(text, opts);

  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model;
    j["tokenizer"] = tok->kind();
    j["ids"] = ids;
    auto pieces = nlohmann::json::array();
    auto tokens = nlohmann::json::array();
    for (TokenId id : ids) {
      pieces.push_back(tok->token_text(id));
      tokens.push_back(tok->token_string(id));
    }
    j["pieces"] = std::move(pieces);  // text as generated output shows it
    j["tokens"] = std::move(tokens);  // vocabulary strings
    j["count"] = ids.size();
    // A byte token alone is not valid UTF-8: such bytes are written as U+FFFD.
    print(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return 0;
  }
  if (o.ids_only) {
    std::string line = "[";
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
    print(line + "]\n");
    return 0;
  }
  for (TokenId id : ids) {
    char num[32];
    std::snprintf(num, sizeof num, "%6d", static_cast<int>(id));
    print(std::string(num) + " -> '" + tok->token_text(id) + "'\n");
  }
  return 0;
}

std::function<int()> setup_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  app.add_option("MODEL", o->model, "GGUF file, HF model directory, tokenizer.json or SentencePiece .model")
      ->required();
  app.add_option("TEXT", o->text, "text to tokenize (use -- before a text that starts with '-')");
  app.add_option("-f,--file", o->file, "read the text from this file instead");
  app.add_flag("--ids", o->ids_only, "print only the list of ids, e.g. [1, 15043, 3186]");
  app.add_flag("--no-bos", o->no_bos, "do not add BOS/EOS (add_special = false)");
  app.add_flag("--no-parse-special", o->no_parse_special, "treat special-token text such as <s> as plain text");
  app.add_flag("--json", o->json, "print {ids, pieces, tokens, count} as JSON");
  return [o] { return run_tokenize(*o); };
}

}  // namespace

QEVAL_COMMAND("tokenize", "Show the token ids and pieces of a text (like llama-tokenize)", setup_tokenize);

}  // namespace qeval::cli
