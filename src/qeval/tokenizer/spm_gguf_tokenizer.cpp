#include "qeval/tokenizer/spm_gguf_tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <functional>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "qeval/util/error.h"

namespace qeval {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Length of the UTF-8 sequence from its first byte; stray continuation bytes count as one.
size_t utf8_len(unsigned char c) {
  static constexpr std::array<uint8_t, 16> kLen = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[c >> 4];
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class SpmGgufTokenizer final : public Tokenizer {
 public:
  SpmGgufTokenizer(const GGUFMetadata& md, const std::string& path) : path_(path) {
    const std::string model = md.get_string("tokenizer.ggml.model", "");
    if (!model.empty() && model != "llama")
      fail_file(path, "tokenizer.ggml.model is '" + model + "', not a SentencePiece ('llama') vocabulary");
    if (!md.contains("tokenizer.ggml.tokens")) fail_file(path, "no vocabulary (tokenizer.ggml.tokens missing)");
    text_ = md.get_string_array("tokenizer.ggml.tokens");
    const size_t n = text_.size();
    if (n == 0) fail_file(path, "tokenizer.ggml.tokens is empty");
    if (n > static_cast<size_t>(INT32_MAX)) fail_file(path, "tokenizer.ggml.tokens is too large");

    if (md.contains("tokenizer.ggml.scores")) {
      score_ = md.get_float_array("tokenizer.ggml.scores");
      if (score_.size() != n)
        fail_file(path, "tokenizer.ggml.scores has " + std::to_string(score_.size()) + " entries, tokens " +
                            std::to_string(n));
    } else {
      score_.assign(n, 0.0f);
    }
    type_.assign(n, GGUFTokenType::Normal);
    if (md.contains("tokenizer.ggml.token_type")) {
      const auto types = md.get_int_array("tokenizer.ggml.token_type");
      if (types.size() != n)
        fail_file(path, "tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries, tokens " +
                            std::to_string(n));
      for (size_t i = 0; i < n; ++i)
        type_[i] = types[i] >= 0 && types[i] <= 6 ? static_cast<GGUFTokenType>(types[i]) : GGUFTokenType::Undefined;
    }

    to_id_.reserve(n);
    for (size_t i = 0; i < n; ++i) to_id_[text_[i]] = static_cast<TokenId>(i);  // a repeated text: last id wins

    static constexpr char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const std::string piece = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
      TokenId id = find(piece);
      if (id < 0) id = find(std::string(1, static_cast<char>(b)));
      byte_id_[b] = id;
    }

    // Special ids: SentencePiece defaults unless the file names a valid one.
    auto special = [&](const char* key, TokenId fallback) -> TokenId {
      TokenId id = fallback < static_cast<TokenId>(n) ? fallback : -1;
      if (const GGUFValue* v = md.find(key); v != nullptr && v->is_integer()) {
        const int64_t x = md.get_int(key);
        if (x >= 0 && x < static_cast<int64_t>(n)) id = static_cast<TokenId>(x);
      }
      return id;
    };
    bos_ = special("tokenizer.ggml.bos_token_id", 1);
    eos_ = special("tokenizer.ggml.eos_token_id", 2);
    unk_ = special("tokenizer.ggml.unknown_token_id", 0);
    add_bos_ = md.get_bool("tokenizer.ggml.add_bos_token", true);
    add_eos_ = md.get_bool("tokenizer.ggml.add_eos_token", false);
    add_space_prefix_ = md.get_bool("tokenizer.ggml.add_space_prefix", true);

    for (size_t i = 0; i < n; ++i) {
      const auto t = type_[i];
      if ((t == GGUFTokenType::Control || t == GGUFTokenType::UserDefined || t == GGUFTokenType::Unknown) &&
          !text_[i].empty())
        specials_.push_back({static_cast<TokenId>(i), false, false});
    }
    std::stable_sort(specials_.begin(), specials_.end(), [&](const Special& a, const Special& b) {
      return text_[a.id].size() > text_[b.id].size();
    });
    // llama.cpp strips the whitespace after Phi-3's special tokens (chosen by general.name).
    const std::string name = lower(md.get_string("general.name", ""));
    if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
      for (auto& s : specials_) {
        const std::string& t = text_[s.id];
        s.rstrip = !(t == "<unk>" || t == "<s>" || t == "<|endoftext|>");
      }
    }
  }

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& opts) const override {
    std::vector<TokenId> out;
    if (opts.add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);

    // 1. Partition into raw-text fragments and special tokens.
    std::vector<Fragment> frags;
    if (!text.empty()) frags.push_back({-1, 0, text.size()});
    std::vector<Fragment> next;
    for (const Special& sp : specials_) {
      const auto t = type_[sp.id];
      if (!opts.parse_special && (t == GGUFTokenType::Control || t == GGUFTokenType::Unknown)) continue;
      const std::string& tok = text_[sp.id];
      next.clear();
      for (const Fragment& f : frags) {
        if (f.token >= 0) {
          next.push_back(f);
          continue;
        }
        size_t cur = f.offset;
        const size_t end = f.offset + f.length;
        while (cur < end) {
          const size_t m = text.find(tok, cur);
          if (m == std::string_view::npos || m + tok.size() > end) {
            next.push_back({-1, cur, end - cur});
            break;
          }
          size_t left = m - cur;
          if (sp.lstrip)
            while (left > 0 && is_ascii_space(text[cur + left - 1])) --left;
          if (left > 0) next.push_back({-1, cur, left});
          next.push_back({sp.id, 0, 0});
          cur = m + tok.size();
          if (sp.rstrip)
            while (cur < end && is_ascii_space(text[cur])) ++cur;
        }
      }
      frags.swap(next);
    }

    // 2-4. Tokenize each text fragment.
    bool prev_special = true;
    std::string buf;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      buf.clear();
      if (add_space_prefix_ && prev_special) buf += kSpaceMarker;
      for (char c : text.substr(f.offset, f.length)) {
        if (c == ' ') buf += kSpaceMarker;
        else buf += c;
      }
      tokenize_spm(buf, out);
      prev_special = false;
    }

    if (opts.add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
    return out;
  }

  std::string decode(const std::vector<TokenId>& ids) const override {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
      std::string piece = token_text(ids[i]);
      if (i == 0 && add_space_prefix_ && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
      out += piece;
    }
    return out;
  }

  std::string token_text(TokenId id) const override {
    check_id(id);
    const std::string& t = text_[id];
    switch (type_[id]) {
      case GGUFTokenType::Normal: {
        std::string out;
        out.reserve(t.size());
        for (size_t i = 0; i < t.size();) {
          if (t.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
            out += ' ';
            i += kSpaceMarker.size();
          } else {
            out += t[i++];
          }
        }
        return out;
      }
      case GGUFTokenType::Byte: {
        if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
          const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
          if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
        }
        return t;  // a byte token spelled as the byte itself
      }
      case GGUFTokenType::Control:
      case GGUFTokenType::UserDefined:
      case GGUFTokenType::Unknown:
        return t;
      case GGUFTokenType::Unused:
      case GGUFTokenType::Undefined:
        break;
    }
    return {};
  }

  std::string token_string(TokenId id) const override {
    check_id(id);
    return text_[id];
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(text_.size()); }
  TokenId bos_id() const override { return bos_; }
  TokenId eos_id() const override { return eos_; }
  bool adds_bos() const override { return add_bos_ && bos_ >= 0; }
  bool adds_eos() const override { return add_eos_ && eos_ >= 0; }
  std::string kind() const override { return "spm-gguf"; }

 private:
  struct Special {
    TokenId id;
    bool lstrip, rstrip;
  };
  struct Fragment {
    TokenId token;  // >= 0: a special token; -1: raw text [offset, offset + length)
    size_t offset, length;
  };
  struct Symbol {
    int prev, next;
    size_t offset, length;  // length 0: merged into its left neighbour
  };
  struct Bigram {
    float score;
    int left, right;
    size_t length;
  };
  struct BigramLess {  // max-heap on score, then the leftmost pair
    bool operator()(const Bigram& a, const Bigram& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };

  TokenId find(std::string_view s) const {
    auto it = to_id_.find(s);
    return it == to_id_.end() ? -1 : it->second;
  }

  void check_id(TokenId id) const {
    if (id < 0 || static_cast<size_t>(id) >= text_.size())
      fail_file(path_, "token id " + std::to_string(id) + " is out of range (vocabulary of " +
                           std::to_string(text_.size()) + ")");
  }

  void tokenize_spm(std::string_view s, std::vector<TokenId>& out) const {
    std::vector<Symbol> sym;
    for (size_t off = 0; off < s.size();) {
      const size_t len = std::min(utf8_len(static_cast<unsigned char>(s[off])), s.size() - off);
      const int idx = static_cast<int>(sym.size());
      sym.push_back({idx - 1, idx + 1, off, len});
      off += len;
    }
    if (sym.empty()) return;
    sym.back().next = -1;

    std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue;
    auto try_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const std::string_view merged = s.substr(sym[left].offset, sym[left].length + sym[right].length);
      const TokenId id = find(merged);
      if (id < 0) return;
      queue.push({score_[id], left, right, merged.size()});
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = sym[b.left];
      Symbol& r = sym[b.right];
      if (l.length == 0 || r.length == 0 || l.length + r.length != b.length) continue;  // stale
      l.length += r.length;
      r.length = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }

    for (int i = 0; i >= 0; i = sym[i].next) {
      const std::string_view piece = s.substr(sym[i].offset, sym[i].length);
      const TokenId id = find(piece);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      for (char c : piece) {  // byte fallback
        TokenId bid = byte_id_[static_cast<unsigned char>(c)];
        if (bid < 0) bid = unk_;
        if (bid < 0)
          fail_file(path_, "cannot encode byte " + std::to_string(static_cast<unsigned char>(c)) +
                               ": no <0xXX> token and no unknown token in the vocabulary");
        out.push_back(bid);
      }
    }
  }

  std::string path_;
  std::vector<std::string> text_;
  std::vector<float> score_;
  std::vector<GGUFTokenType> type_;
  std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> to_id_;
  std::array<TokenId, 256> byte_id_{};
  std::vector<Special> specials_;
  TokenId bos_ = -1, eos_ = -1, unk_ = -1;
  bool add_bos_ = true, add_eos_ = false, add_space_prefix_ = true;
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_gguf_tokenizer(const GGUFMetadata& md, const std::string& path) {
  return std::make_unique<SpmGgufTokenizer>(md, path);
}

}  // namespace qeval
