#include "qeval/tokenizer/tokenizer_json.h"

#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qeval/util/error.h"

namespace qeval {

namespace {

using json = nlohmann::json;

// Parsing context: every error names the file and where in it the problem is.
class Parser {
 public:
  explicit Parser(const std::string& label) : label_(label) {}

  [[noreturn]] void bad(const std::string& where, const std::string& what) const {
    fail_file(label_, where.empty() ? what : where + ": " + what);
  }

  const json& require(const json& obj, const char* key, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end()) bad(where, std::string("missing \"") + key + "\"");
    return *it;
  }
  const json* optional(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  bool get_bool(const json& obj, const char* key, bool def, const std::string& where) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return def;
    if (!v->is_boolean()) bad(where, std::string("\"") + key + "\" must be true or false");
    return v->get<bool>();
  }
  std::string get_string(const json& obj, const char* key, const std::string& def, const std::string& where) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return def;
    if (!v->is_string()) bad(where, std::string("\"") + key + "\" must be a string");
    return v->get<std::string>();
  }
  int64_t get_int(const json& obj, const char* key, int64_t def, const std::string& where) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return def;
    if (!v->is_number_integer()) bad(where, std::string("\"") + key + "\" must be an integer");
    return v->get<int64_t>();
  }
  const json& array(const json& obj, const char* key, const std::string& where) const {
    const json& v = require(obj, key, where);
    if (!v.is_array()) bad(where, std::string("\"") + key + "\" must be an array");
    return v;
  }
  std::string type_of(const json& obj, const std::string& where) const {
    if (!obj.is_object()) bad(where, "expected an object");
    const json& t = require(obj, "type", where);
    if (!t.is_string()) bad(where, "\"type\" must be a string");
    return t.get<std::string>();
  }

  // {"String": "..."} or {"Regex": "..."}: fills one of the two.
  void pattern(const json& obj, const std::string& where, std::string& literal, std::unique_ptr<Regex>& regex) const {
    const json& p = require(obj, "pattern", where);
    if (!p.is_object()) bad(where, "\"pattern\" must be an object");
    if (const json* s = optional(p, "String")) {
      if (!s->is_string()) bad(where, "pattern String must be a string");
      literal = s->get<std::string>();
      return;
    }
    if (const json* r = optional(p, "Regex")) {
      if (!r->is_string()) bad(where, "pattern Regex must be a string");
      try {
        regex = std::make_unique<Regex>(r->get<std::string>());
      } catch (const Error& e) {
        bad(where, e.what());
      }
      return;
    }
    bad(where, "pattern must have \"String\" or \"Regex\"");
  }

  std::unique_ptr<Normalizer> normalizer(const json& j, const std::string& where) const;
  std::unique_ptr<PreTokenizer> pre_tokenizer(const json& j, const std::string& where) const;
  std::unique_ptr<Decoder> decoder(const json& j, const std::string& where) const;

 private:
  const std::string& label_;
};

std::unique_ptr<Normalizer> Parser::normalizer(const json& j, const std::string& where) const {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(unicode::NormalForm::NFC);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(unicode::NormalForm::NFD);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(unicode::NormalForm::NFKC);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(unicode::NormalForm::NFKD);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend") {
    const json& p = require(j, "prepend", where);
    if (!p.is_string()) bad(where, "\"prepend\" must be a string");
    return std::make_unique<PrependNormalizer>(p.get<std::string>());
  }
  if (type == "Replace") {
    std::string literal;
    std::unique_ptr<Regex> regex;
    pattern(j, where, literal, regex);
    const json& c = require(j, "content", where);
    if (!c.is_string()) bad(where, "\"content\" must be a string");
    if (regex) return std::make_unique<ReplaceNormalizer>(std::move(regex), c.get<std::string>());
    return std::make_unique<ReplaceNormalizer>(std::move(literal), c.get<std::string>());
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(get_bool(j, "strip_left", true, where), get_bool(j, "strip_right", true, where));
  }
  if (type == "Sequence") {
    const json& list = array(j, "normalizers", where);
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto n = normalizer(list[i], where + ".normalizers[" + std::to_string(i) + "]");
      if (n) parts.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  bad(where, "unsupported normalizer type '" + type + "'");
}

SplitBehavior parse_behavior(const Parser& ps, const std::string& name, const std::string& where) {
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  ps.bad(where, "unknown split behavior '" + name + "'");
}

// Metaspace's prepend rule: "prepend_scheme" (newer files) or "add_prefix_space" (older).
MetaspacePreTokenizer::Prepend metaspace_prepend(const Parser& ps, const json& j, const std::string& where) {
  const std::string scheme = ps.get_string(j, "prepend_scheme", "", where);
  if (scheme.empty()) {
    return ps.get_bool(j, "add_prefix_space", true, where) ? MetaspacePreTokenizer::Prepend::Always
                                                           : MetaspacePreTokenizer::Prepend::Never;
  }
  if (scheme == "always") return MetaspacePreTokenizer::Prepend::Always;
  if (scheme == "never") return MetaspacePreTokenizer::Prepend::Never;
  if (scheme == "first") return MetaspacePreTokenizer::Prepend::First;
  ps.bad(where, "unknown prepend_scheme '" + scheme + "'");
}

std::unique_ptr<PreTokenizer> Parser::pre_tokenizer(const json& j, const std::string& where) const {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "Split") {
    std::string literal;
    std::unique_ptr<Regex> regex;
    pattern(j, where, literal, regex);
    if (!regex) regex = std::make_unique<Regex>(regex_escape(literal));
    const SplitBehavior b = parse_behavior(*this, get_string(j, "behavior", "Isolated", where), where);
    return std::make_unique<SplitPreTokenizer>(std::move(regex), b, get_bool(j, "invert", false, where));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(get_bool(j, "add_prefix_space", true, where),
                                                   get_bool(j, "use_regex", true, where));
  }
  if (type == "Digits") return std::make_unique<DigitsPreTokenizer>(get_bool(j, "individual_digits", false, where));
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPreTokenizer>();
  if (type == "Metaspace") {
    return std::make_unique<MetaspacePreTokenizer>(get_string(j, "replacement", "\xE2\x96\x81", where),
                                                   metaspace_prepend(*this, j, where), get_bool(j, "split", true, where));
  }
  if (type == "Sequence") {
    const json& list = array(j, "pretokenizers", where);
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = pre_tokenizer(list[i], where + ".pretokenizers[" + std::to_string(i) + "]");
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  bad(where, "unsupported pre_tokenizer type '" + type + "'");
}

std::unique_ptr<Decoder> Parser::decoder(const json& j, const std::string& where) const {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    std::string literal;
    std::unique_ptr<Regex> regex;
    pattern(j, where, literal, regex);
    const json& c = require(j, "content", where);
    if (!c.is_string()) bad(where, "\"content\" must be a string");
    if (regex) return std::make_unique<ReplaceDecoder>(std::move(regex), c.get<std::string>());
    return std::make_unique<ReplaceDecoder>(std::move(literal), c.get<std::string>());
  }
  if (type == "Strip") {
    const int64_t start = get_int(j, "start", 0, where);
    const int64_t stop = get_int(j, "stop", 0, where);
    if (start < 0 || stop < 0) bad(where, "Strip start/stop must not be negative");
    return std::make_unique<StripDecoder>(get_string(j, "content", " ", where), static_cast<size_t>(start),
                                          static_cast<size_t>(stop));
  }
  if (type == "Metaspace") {
    return std::make_unique<MetaspaceDecoder>(
        get_string(j, "replacement", "\xE2\x96\x81", where),
        metaspace_prepend(*this, j, where) != MetaspacePreTokenizer::Prepend::Never);
  }
  if (type == "Sequence") {
    const json& list = array(j, "decoders", where);
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto d = decoder(list[i], where + ".decoders[" + std::to_string(i) + "]");
      if (d) parts.push_back(std::move(d));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  bad(where, "unsupported decoder type '" + type + "'");
}

// ---- streaming parse ---------------------------------------------------------------------
//
// A SAX handler that builds the DOM of everything except model.vocab and model.merges, which
// it collects straight into vectors (they are 99% of the file; a DOM of them costs more than
// the rest of loading). In the DOM those two appear as an empty object / array.
struct BigSections {
  bool have_vocab = false;
  bool have_merges = false;
  std::vector<std::pair<std::string, TokenId>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
};

class SaxBuilder final : public nlohmann::json_sax<json> {
 public:
  json root;
  BigSections big;
  std::string error;  // set when a handler rejected the input

  bool null() override { return in_big() ? reject() : put(json(nullptr)); }
  bool boolean(bool v) override { return in_big() ? reject() : put(json(v)); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::Vocab) return vocab_id(v);
    return in_big() ? reject() : put(json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::Vocab) return vocab_id(v > static_cast<number_unsigned_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v));
    return in_big() ? reject() : put(json(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return in_big() ? reject() : put(json(v)); }
  bool binary(binary_t&) override { return in_big() ? reject() : put(json::binary({})); }
  bool string(string_t& v) override {
    if (mode_ == Mode::Merges) {
      if (merge_depth_ == 2) {
        pair_.push_back(std::move(v));
        return true;
      }
      const size_t sp = v.find(' ', 1);
      if (sp == std::string::npos) {
        error = "model: merge " + std::to_string(big.merges.size()) + " '" + v + "' is not \"a b\"";
        return false;
      }
      big.merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
      return true;
    }
    if (mode_ == Mode::Vocab) return reject();
    return put(json(std::move(v)));
  }
  bool start_object(std::size_t) override {
    if (in_big()) return reject();
    if (at_model_member("vocab")) {
      put(json::object());
      big.have_vocab = true;
      mode_ = Mode::Vocab;
      return true;
    }
    return open(json::object());
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::None;
      return true;
    }
    return close();
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::Merges) {
      if (merge_depth_ != 1) return reject();
      merge_depth_ = 2;
      pair_.clear();
      return true;
    }
    if (mode_ == Mode::Vocab) return reject();
    if (at_model_member("merges")) {
      put(json::array());
      big.have_merges = true;
      mode_ = Mode::Merges;
      merge_depth_ = 1;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::Merges) {
      if (merge_depth_ == 2) {
        if (pair_.size() != 2) return reject();
        big.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
        merge_depth_ = 1;
      } else {
        mode_ = Mode::None;
      }
      return true;
    }
    return close();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& ex) override {
    error = std::string("invalid JSON: ") + ex.what();
    return false;
  }

 private:
  enum class Mode { None, Vocab, Merges };
  bool in_big() const { return mode_ != Mode::None; }
  bool reject() {
    if (mode_ == Mode::Vocab) {
      error = "model: vocab entry '" + key_ + "' has no integer id";
    } else {
      error = "model: merge " + std::to_string(big.merges.size()) + " is neither \"a b\" nor [\"a\", \"b\"]";
    }
    return false;
  }
  bool vocab_id(int64_t v) {
    if (v < 0 || v > INT32_MAX - 1) {
      error = "model: vocab entry '" + key_ + "' has id " + std::to_string(v) + " out of range";
      return false;
    }
    big.vocab.emplace_back(std::move(key_), static_cast<TokenId>(v));
    return true;
  }
  // Is the next value root["model"][name]?
  bool at_model_member(const char* name) const {
    return stack_.size() == 2 && keys_[1] == "model" && stack_[1]->is_object() && key_ == name;
  }
  json* put_ptr(json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_object()) {
      json& slot = top[key_];
      slot = std::move(v);
      return &slot;
    }
    top.push_back(std::move(v));
    return &top.back();
  }
  bool put(json v) {
    put_ptr(std::move(v));
    return true;
  }
  bool open(json v) {
    const bool in_object = !stack_.empty() && stack_.back()->is_object();
    json* p = put_ptr(std::move(v));
    keys_.push_back(in_object ? key_ : std::string());
    stack_.push_back(p);
    return true;
  }
  bool close() {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }

  std::vector<json*> stack_;
  std::vector<std::string> keys_;  // the key under which each open container was entered
  std::string key_;
  Mode mode_ = Mode::None;
  int merge_depth_ = 0;
  std::vector<std::string> pair_;
};

// ---- model ---------------------------------------------------------------------------------

std::unique_ptr<BpeModel> parse_model(const Parser& ps, const json& m, BigSections& big) {
  const std::string where = "model";
  if (!m.is_object()) ps.bad(where, "expected an object");
  std::string type = ps.get_string(m, "type", "", where);
  if (type.empty()) type = m.contains("merges") ? "BPE" : "?";  // very old files omit "type"
  if (type != "BPE") ps.bad(where, "unsupported model type '" + type + "' (only BPE is implemented)");
  if (const json* d = ps.optional(m, "dropout")) {
    if (!d->is_number() || d->get<double>() != 0.0) ps.bad(where, "BPE dropout is not supported");
  }

  BpeModel::Options opt;
  opt.byte_fallback = ps.get_bool(m, "byte_fallback", false, where);
  opt.fuse_unk = ps.get_bool(m, "fuse_unk", false, where);
  opt.ignore_merges = ps.get_bool(m, "ignore_merges", false, where);
  opt.unk_token = ps.get_string(m, "unk_token", "", where);
  opt.continuing_subword_prefix = ps.get_string(m, "continuing_subword_prefix", "", where);
  opt.end_of_word_suffix = ps.get_string(m, "end_of_word_suffix", "", where);

  if (!big.have_vocab) {
    if (m.contains("vocab")) ps.bad(where, "\"vocab\" must be an object of token -> id");
    ps.bad(where, "missing \"vocab\"");
  }
  if (big.vocab.empty()) ps.bad(where, "empty vocab");
  // Ids index dense tables: an id far beyond the entry count would allocate for nothing.
  for (const auto& [tok, id] : big.vocab)
    if (static_cast<size_t>(id) >= 2 * big.vocab.size() + 1024)
      ps.bad(where, "vocab id " + std::to_string(id) + " is out of range for " + std::to_string(big.vocab.size()) +
                        " entries");
  auto model = std::make_unique<BpeModel>(std::move(big.vocab), opt);

  if (!big.have_merges && m.contains("merges") && !m["merges"].is_null()) ps.bad(where, "\"merges\" must be an array");
  model->reserve_merges(big.merges.size());
  for (size_t i = 0; i < big.merges.size(); ++i) {
    const auto& [a, b] = big.merges[i];
    if (!model->add_merge(a, b)) {
      ps.bad(where, "merge " + std::to_string(i) + " ('" + a + "', '" + b + "') uses a token that is not in the vocab");
    }
  }
  big.merges.clear();
  big.merges.shrink_to_fit();
  return model;
}

std::vector<AddedToken> parse_added_tokens(const Parser& ps, const json& root) {
  std::vector<AddedToken> out;
  const json* list = ps.optional(root, "added_tokens");
  if (list == nullptr) return out;
  if (!list->is_array()) ps.bad("added_tokens", "expected an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& t = (*list)[i];
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object()) ps.bad(where, "expected an object");
    AddedToken a;
    const int64_t id = ps.get_int(t, "id", -1, where);
    if (id < 0 || id > INT32_MAX - 1) ps.bad(where, "missing or invalid \"id\"");
    a.id = static_cast<TokenId>(id);
    a.content = ps.get_string(t, "content", "", where);
    if (a.content.empty()) ps.bad(where, "missing or empty \"content\"");
    a.special = ps.get_bool(t, "special", false, where);
    a.lstrip = ps.get_bool(t, "lstrip", false, where);
    a.rstrip = ps.get_bool(t, "rstrip", false, where);
    a.single_word = ps.get_bool(t, "single_word", false, where);
    a.normalized = ps.get_bool(t, "normalized", !a.special, where);
    out.push_back(std::move(a));
  }
  return out;
}

// Token text -> id: added tokens first, then the model vocabulary.
TokenId lookup(const std::vector<AddedToken>& added, const BpeModel& model, const std::string& text) {
  for (const auto& a : added)
    if (a.content == text) return a.id;
  return model.token_to_id(text);
}

// Ids that the post-processor puts before and after a single sequence.
void parse_post_processor(const Parser& ps, const json& j, const std::string& where, const std::vector<AddedToken>& added,
                          const BpeModel& model, std::vector<TokenId>& prefix, std::vector<TokenId>& suffix) {
  if (j.is_null()) return;
  const std::string type = ps.type_of(j, where);
  auto token_pair = [&](const char* key) {
    // ["<s>", 0]
    const json& v = ps.require(j, key, where);
    if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer()) ps.bad(where, std::string("\"") + key + "\" must be [token, id]");
    return static_cast<TokenId>(v[1].get<int64_t>());
  };
  if (type == "ByteLevel") return;
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix.insert(prefix.begin(), token_pair("cls"));
    suffix.push_back(token_pair("sep"));
    return;
  }
  if (type == "Sequence") {
    const json& list = ps.array(j, "processors", where);
    for (size_t i = 0; i < list.size(); ++i) {
      parse_post_processor(ps, list[i], where + ".processors[" + std::to_string(i) + "]", added, model, prefix, suffix);
    }
    return;
  }
  if (type == "TemplateProcessing") {
    const json& single = ps.array(j, "single", where);
    const json* specials = ps.optional(j, "special_tokens");
    std::vector<TokenId> pre, post;
    bool seen_sequence = false;
    for (const json& item : single) {
      if (!item.is_object() || item.size() != 1) ps.bad(where, "bad item in \"single\"");
      if (const json* seq = ps.optional(item, "Sequence")) {
        (void)seq;
        if (seen_sequence) ps.bad(where, "\"single\" holds more than one sequence");
        seen_sequence = true;
        continue;
      }
      const json* sp = ps.optional(item, "SpecialToken");
      if (sp == nullptr) ps.bad(where, "items of \"single\" must be Sequence or SpecialToken");
      const std::string name = ps.get_string(*sp, "id", "", where);
      std::vector<TokenId> ids;
      const json* def = specials != nullptr ? ps.optional(*specials, name.c_str()) : nullptr;
      if (def != nullptr) {
        for (const json& v : ps.array(*def, "ids", where)) {
          if (!v.is_number_integer()) ps.bad(where, "special token '" + name + "' has a non-integer id");
          ids.push_back(static_cast<TokenId>(v.get<int64_t>()));
        }
      } else {
        const TokenId id = lookup(added, model, name);
        if (id < 0) ps.bad(where, "special token '" + name + "' is not defined");
        ids.push_back(id);
      }
      auto& dst = seen_sequence ? post : pre;
      dst.insert(dst.end(), ids.begin(), ids.end());
    }
    if (!seen_sequence) ps.bad(where, "\"single\" has no $A sequence");
    prefix.insert(prefix.begin(), pre.begin(), pre.end());
    suffix.insert(suffix.end(), post.begin(), post.end());
    return;
  }
  ps.bad(where, "unsupported post_processor type '" + type + "'");
}

// bos_token / eos_token of tokenizer_config.json: a string, {"content": ...} or null.
// Returns false when the key is absent.
bool config_token(const json& cfg, const char* key, std::string& out, bool& is_null) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return false;
  is_null = false;
  if (it->is_string()) {
    out = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    out = (*it)["content"].get<std::string>();
  } else {
    is_null = true;
  }
  return true;
}

}  // namespace

std::unique_ptr<BpeTokenizer> parse_tokenizer_json(std::string_view json_text, const std::string& json_label,
                                                   std::string_view config_text, const std::string& config_label) {
  Parser ps(json_label);
  SaxBuilder sax;
  if (!json::sax_parse(json_text.begin(), json_text.end(), &sax)) {
    fail_file(json_label, sax.error.empty() ? std::string("invalid JSON") : sax.error);
  }
  json& root = sax.root;
  if (!root.is_object()) fail_file(json_label, "not a tokenizer.json (top level is not an object)");
  auto mit = root.find("model");
  if (mit == root.end() || mit->is_null()) fail_file(json_label, "no model section");

  BpeTokenizerParts parts;
  parts.kind = "bpe";
  parts.model = parse_model(ps, *mit, sax.big);
  parts.added_tokens = parse_added_tokens(ps, root);
  static const json kNull;
  auto section = [&](const char* key) -> const json& {
    auto it = root.find(key);
    return it == root.end() ? kNull : *it;
  };
  parts.normalizer = ps.normalizer(section("normalizer"), "normalizer");
  parts.pre_tokenizer = ps.pre_tokenizer(section("pre_tokenizer"), "pre_tokenizer");
  parts.decoder = ps.decoder(section("decoder"), "decoder");
  parts.decode_mode = parts.decoder ? BpeTokenizerParts::DecodeMode::Decoder : BpeTokenizerParts::DecodeMode::JoinWithSpace;
  parse_post_processor(ps, section("post_processor"), "post_processor", parts.added_tokens, *parts.model, parts.prefix,
                       parts.suffix);

  // BOS/EOS: tokenizer_config.json first, then what the post-processor adds, then (without a
  // config) the usual spellings among the special added tokens.
  json cfg;
  bool have_cfg = false;
  if (!config_text.empty()) {
    try {
      cfg = json::parse(config_text.begin(), config_text.end());
    } catch (const json::parse_error& e) {
      fail_file(config_label, std::string("invalid JSON: ") + e.what());
    }
    if (!cfg.is_object()) fail_file(config_label, "top level is not an object");
    have_cfg = true;
  }
  auto resolve = [&](const char* key, bool from_front, std::initializer_list<const char*> guesses) -> TokenId {
    std::string text;
    bool is_null = false;
    if (have_cfg && config_token(cfg, key, text, is_null)) {
      return is_null ? -1 : lookup(parts.added_tokens, *parts.model, text);
    }
    const auto& ids = from_front ? parts.prefix : parts.suffix;
    if (!ids.empty()) return from_front ? ids.front() : ids.back();
    if (have_cfg) return -1;
    for (const char* g : guesses) {
      for (const auto& a : parts.added_tokens)
        if (a.special && a.content == g) return a.id;
    }
    return -1;
  };
  parts.bos = resolve("bos_token", true, {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"});
  parts.eos = resolve("eos_token", false, {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|im_end|>"});

  if (have_cfg) {
    auto it = cfg.find("add_bos_token");
    if (it != cfg.end() && it->is_boolean() && parts.bos >= 0) {
      const bool has = !parts.prefix.empty() && parts.prefix.front() == parts.bos;
      if (it->get<bool>() && !has) parts.prefix.insert(parts.prefix.begin(), parts.bos);
      if (!it->get<bool>() && has) parts.prefix.erase(parts.prefix.begin());
    }
    it = cfg.find("add_eos_token");
    if (it != cfg.end() && it->is_boolean() && parts.eos >= 0) {
      const bool has = !parts.suffix.empty() && parts.suffix.back() == parts.eos;
      if (it->get<bool>() && !has) parts.suffix.push_back(parts.eos);
      if (!it->get<bool>() && has) parts.suffix.pop_back();
    }
  }
  const size_t id_limit = 2 * (static_cast<size_t>(parts.model->max_id()) + 1 + parts.added_tokens.size()) + 1024;
  for (const auto& t : parts.added_tokens)
    if (static_cast<size_t>(t.id) >= id_limit)
      ps.bad("added_tokens", "id " + std::to_string(t.id) + " of '" + t.content + "' is out of range for the vocabulary");
  return std::make_unique<BpeTokenizer>(std::move(parts));
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_file(path, "cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail_file(path, "read error");
  return ss.str();
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  namespace fs = std::filesystem;
  std::string file = path;
  std::error_code ec;
  if (fs::is_directory(file, ec)) file = (fs::path(file) / "tokenizer.json").string();
  const std::string text = read_file(file);
  const fs::path cfg_path = fs::path(file).parent_path() / "tokenizer_config.json";
  std::string cfg_text;
  if (fs::is_regular_file(cfg_path, ec)) cfg_text = read_file(cfg_path.string());
  return parse_tokenizer_json(text, file, cfg_text, cfg_path.string());
}

}  // namespace qeval
