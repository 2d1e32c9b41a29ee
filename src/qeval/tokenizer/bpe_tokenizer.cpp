#include "qeval/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <cstdio>

#include "qeval/io/gguf.h"
#include "qeval/tokenizer/unicode.h"
#include "qeval/util/error.h"

namespace qeval {

// ---- BpeModel --------------------------------------------------------------------------------

void BpeModel::MergeTable::reserve(size_t n) {
  size_t cap = 16;
  int shift = 60;
  while (cap < n * 2) cap <<= 1, --shift;
  if (cap <= keys_.size()) return;
  std::vector<uint64_t> old_keys(cap, kEmpty);
  std::vector<Merge> old_vals(cap);
  old_keys.swap(keys_);
  old_vals.swap(vals_);
  shift_ = shift;
  size_ = 0;
  for (size_t i = 0; i < old_keys.size(); ++i)
    if (old_keys[i] != kEmpty) insert(old_keys[i], old_vals[i]);
}

bool BpeModel::MergeTable::insert(uint64_t key, Merge m) {
  if ((size_ + 1) * 2 > keys_.size()) reserve(size_ + 1 > 8 ? (size_ + 1) * 2 : 16);
  const size_t mask = keys_.size() - 1;
  for (size_t i = slot(key);; i = (i + 1) & mask) {
    if (keys_[i] == key) return false;
    if (keys_[i] == kEmpty) {
      keys_[i] = key;
      vals_[i] = m;
      ++size_;
      return true;
    }
  }
}

const BpeModel::Merge* BpeModel::MergeTable::find(uint64_t key) const {
  if (keys_.empty()) return nullptr;
  const size_t mask = keys_.size() - 1;
  for (size_t i = slot(key);; i = (i + 1) & mask) {
    if (keys_[i] == key) return &vals_[i];
    if (keys_[i] == kEmpty) return nullptr;
  }
}

uint64_t BpeModel::VocabIndex::hash(std::string_view s) {
  // FNV-1a, then a multiplicative finaliser so that the low bits are well mixed.
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

void BpeModel::VocabIndex::build(const std::vector<std::string>& strings, const std::vector<TokenId>& ids) {
  size_t cap = 16;
  while (cap < ids.size() * 2) cap <<= 1;
  hashes_.assign(cap, 0);
  ids_.assign(cap, -1);
  mask_ = cap - 1;
  for (TokenId id : ids) {
    const std::string& s = strings[static_cast<size_t>(id)];
    const uint64_t h = hash(s);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (ids_[i] < 0) {
        hashes_[i] = h;
        ids_[i] = id;
        break;
      }
      if (hashes_[i] == h && strings[static_cast<size_t>(ids_[i])] == s) break;  // first id wins
    }
  }
}

TokenId BpeModel::VocabIndex::find(std::string_view s, const std::vector<std::string>& strings) const {
  if (ids_.empty()) return -1;
  const uint64_t h = hash(s);
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    const TokenId id = ids_[i];
    if (id < 0) return -1;
    if (hashes_[i] == h && strings[static_cast<size_t>(id)] == s) return id;
  }
}

BpeModel::BpeModel(std::vector<std::pair<std::string, TokenId>> vocab, Options options)
    : options_(std::move(options)) {
  TokenId max_id = -1;
  for (const auto& [tok, id] : vocab) max_id = std::max(max_id, id);
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  has_id_.assign(static_cast<size_t>(max_id + 1), 0);
  // Strings live in id_to_token_ (never resized again); the map holds views of them. A string
  // listed twice keeps its first id; an id listed twice keeps its first string.
  std::vector<TokenId> order;
  order.reserve(vocab.size());
  for (auto& [tok, id] : vocab) {
    if (id < 0 || has_id_[static_cast<size_t>(id)]) continue;
    has_id_[static_cast<size_t>(id)] = 1;
    id_to_token_[static_cast<size_t>(id)] = std::move(tok);
    order.push_back(id);
  }
  index_.build(id_to_token_, order);
  if (!options_.unk_token.empty()) unk_id_ = token_to_id(options_.unk_token);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_ids_[b] = token_to_id(name);
  }
}

TokenId BpeModel::token_to_id(std::string_view token) const { return index_.find(token, id_to_token_); }

const std::string* BpeModel::id_to_token(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[static_cast<size_t>(id)]) return nullptr;
  return &id_to_token_[static_cast<size_t>(id)];
}

bool BpeModel::add_merge(std::string_view a, std::string_view b) {
  const int32_t rank = next_rank_++;
  const TokenId ia = token_to_id(a);
  const TokenId ib = token_to_id(b);
  if (ia < 0 || ib < 0) return false;
  scratch_.assign(a);
  const auto& csp = options_.continuing_subword_prefix;
  if (!csp.empty() && b.substr(0, csp.size()) == csp) {
    scratch_.append(b.substr(csp.size()));
  } else {
    scratch_.append(b);
  }
  const TokenId im = token_to_id(scratch_);
  if (im < 0) return false;
  merges_.insert(pair_key(ia, ib), Merge{rank, im});
  return true;
}

void BpeModel::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    const TokenId whole = token_to_id(word);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  constexpr size_t kMaxCachedWord = 64;
  constexpr size_t kMaxCacheEntries = 1 << 17;
  const bool cacheable = word.size() <= kMaxCachedWord;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::vector<TokenId> ids(out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::move(key), std::move(ids));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<TokenId>& out) const {
  struct Sym {
    TokenId id;     // -1 once merged into the symbol on its left
    int32_t prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  const auto& csp = options_.continuing_subword_prefix;
  const auto& eow = options_.end_of_word_suffix;
  std::string buf;
  bool prev_unk = false;
  for (size_t i = 0; i < word.size();) {
    const auto c = unicode::utf8_next(word, i);
    const std::string_view ch = word.substr(i, c.len);
    const bool last = i + c.len == word.size();
    TokenId id;
    if (csp.empty() && eow.empty()) {
      buf.assign(ch);
    } else {
      buf.clear();
      if (i > 0) buf += csp;
      buf += ch;
      if (last) buf += eow;
    }
    id = token_to_id(buf);
    i += c.len;
    if (id >= 0) {
      syms.push_back({id, 0, 0});
      prev_unk = false;
      continue;
    }
    if (options_.byte_fallback) {
      bool ok = true;
      for (char b : ch) ok = ok && byte_ids_[static_cast<unsigned char>(b)] >= 0;
      if (ok) {
        for (char b : ch) syms.push_back({byte_ids_[static_cast<unsigned char>(b)], 0, 0});
        prev_unk = false;
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (!(options_.fuse_unk && prev_unk)) syms.push_back({unk_id_, 0, 0});
      prev_unk = true;
    }
    // No unk token: the character is dropped (HF behaviour).
  }
  const auto n = static_cast<int32_t>(syms.size());
  if (n == 0) return;
  for (int32_t i = 0; i < n; ++i) {
    syms[static_cast<size_t>(i)].prev = i - 1;
    syms[static_cast<size_t>(i)].next = i + 1 < n ? i + 1 : -1;
  }

  struct Cand {
    int32_t rank;
    int32_t pos;
    TokenId left, right, merged;
  };
  struct Later {
    bool operator()(const Cand& a, const Cand& b) const {
      return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    }
  };
  std::vector<Cand> heap;
  heap.reserve(static_cast<size_t>(n));
  auto consider = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t nx = syms[static_cast<size_t>(pos)].next;
    if (nx < 0) return;
    const TokenId l = syms[static_cast<size_t>(pos)].id;
    const TokenId r = syms[static_cast<size_t>(nx)].id;
    const Merge* m = merges_.find(pair_key(l, r));
    if (m == nullptr) return;
    heap.push_back({m->rank, pos, l, r, m->id});
    std::push_heap(heap.begin(), heap.end(), Later{});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), Later{});
    const Cand c = heap.back();
    heap.pop_back();
    Sym& s = syms[static_cast<size_t>(c.pos)];
    if (s.id != c.left || s.next < 0) continue;  // stale: this symbol changed
    Sym& r = syms[static_cast<size_t>(s.next)];
    if (r.id != c.right) continue;
    s.id = c.merged;
    r.id = -1;
    s.next = r.next;
    if (s.next >= 0) syms[static_cast<size_t>(s.next)].prev = c.pos;
    consider(s.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) out.push_back(syms[static_cast<size_t>(i)].id);
}

// ---- added tokens ----------------------------------------------------------------------------

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  node_token_.push_back(-1);
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const auto& content = tokens_[t].content;
    if (content.empty()) continue;
    int32_t node = 0;
    for (char ch : content) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(ch);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        const auto child = static_cast<int32_t>(node_token_.size());
        node_token_.push_back(-1);
        it = edges_.emplace(key, child).first;
      }
      node = it->second;
    }
    if (node_token_[static_cast<size_t>(node)] < 0) node_token_[static_cast<size_t>(node)] = static_cast<int32_t>(t);
    first_byte_[static_cast<unsigned char>(content[0])] = true;
  }
}

namespace {

// The character that ends at byte `end` (exclusive), or an invalid single byte.
unicode::Utf8Char char_before(std::string_view s, size_t end) {
  size_t b = end - 1;
  const size_t lo = end >= 4 ? end - 4 : 0;
  while (b > lo && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  auto c = unicode::utf8_next(s, b);
  if (c.valid && b + c.len == end) return c;
  return {static_cast<unsigned char>(s[end - 1]), 1, false};
}

}  // namespace

void AddedTokenMatcher::split(std::string_view text, bool parse_special, std::vector<Piece>& out) const {
  const size_t n = text.size();
  size_t prev = 0;
  size_t pos = 0;
  if (!tokens_.empty()) {
    while (pos < n) {
      if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
        ++pos;
        continue;
      }
      int32_t best = -1;
      size_t best_end = 0;
      int32_t node = 0;
      for (size_t j = pos; j < n; ++j) {
        auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[j]));
        if (it == edges_.end()) break;
        node = it->second;
        const int32_t t = node_token_[static_cast<size_t>(node)];
        if (t >= 0 && (parse_special || !tokens_[static_cast<size_t>(t)].special)) {
          best = t;
          best_end = j + 1;
        }
      }
      if (best < 0) {
        ++pos;
        continue;
      }
      const AddedToken& tok = tokens_[static_cast<size_t>(best)];
      if (tok.single_word) {
        const bool word_before = pos > 0 && [&] {
          auto c = char_before(text, pos);
          return c.valid && unicode::is_word_char(c.cp);
        }();
        const bool word_after = best_end < n && [&] {
          auto c = unicode::utf8_next(text, best_end);
          return c.valid && unicode::is_word_char(c.cp);
        }();
        if (word_before || word_after) {
          ++pos;
          continue;
        }
      }
      size_t b = pos;
      size_t e = best_end;
      if (tok.lstrip) {
        while (b > prev) {
          auto c = char_before(text, b);
          if (!c.valid || !unicode::is_whitespace(c.cp)) break;
          b -= c.len;
        }
      }
      if (tok.rstrip) {
        while (e < n) {
          auto c = unicode::utf8_next(text, e);
          if (!c.valid || !unicode::is_whitespace(c.cp)) break;
          e += c.len;
        }
      }
      if (b > prev) out.push_back({prev, b, -1});
      out.push_back({b, e, tok.id});
      prev = pos = e;
    }
  }
  if (prev < n) out.push_back({prev, n, -1});
}

// ---- decoders --------------------------------------------------------------------------------

void ByteLevelDecoder::decode_chain(std::vector<std::string>& tokens, bool) const {
  std::string all;
  for (const auto& t : tokens) all += t;
  tokens.assign(1, unicode::byte_level_to_bytes(all));
}

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

// "<0xAB>" -> 0xAB; -1 when the token is not a byte token.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = t[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

void ReplaceDecoder::decode_chain(std::vector<std::string>& tokens, bool) const {
  for (auto& t : tokens) {
    if (regex_) {
      std::vector<std::pair<size_t, size_t>> m;
      regex_->find_all(t, m);
      if (m.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [b, e] : m) {
        out.append(t, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    } else {
      replace_all(t, literal_, content_);
    }
  }
}

void ByteFallbackDecoder::decode_chain(std::vector<std::string>& tokens, bool) const {
  std::vector<std::string> out;
  out.reserve(tokens.size());
  std::string bytes;
  bool pending = false;
  for (auto& t : tokens) {
    const int b = parse_byte_token(t);
    if (b >= 0) {
      bytes.push_back(static_cast<char>(b));
      pending = true;
      continue;
    }
    if (pending) {
      out.push_back(std::move(bytes));
      bytes.clear();
      pending = false;
    }
    out.push_back(std::move(t));
  }
  if (pending) out.push_back(std::move(bytes));
  tokens.swap(out);
}

void FuseDecoder::decode_chain(std::vector<std::string>& tokens, bool) const {
  std::string all;
  for (const auto& t : tokens) all += t;
  tokens.assign(1, std::move(all));
}

void StripDecoder::decode_chain(std::vector<std::string>& tokens, bool streaming) const {
  if (streaming || content_.empty()) return;
  for (auto& t : tokens) {
    size_t b = 0;
    for (size_t k = 0; k < start_ && t.compare(b, content_.size(), content_) == 0; ++k) b += content_.size();
    size_t e = t.size();
    for (size_t k = 0; k < stop_ && e >= b + content_.size() &&
                       t.compare(e - content_.size(), content_.size(), content_) == 0;
         ++k)
      e -= content_.size();
    t = t.substr(b, e - b);
  }
}

void MetaspaceDecoder::decode_chain(std::vector<std::string>& tokens, bool streaming) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    replace_all(tokens[i], replacement_, " ");
    if (i == 0 && strip_first_ && !streaming && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
  }
}

void SequenceDecoder::decode_chain(std::vector<std::string>& tokens, bool streaming) const {
  for (const auto& d : parts_) d->decode_chain(tokens, streaming);
}

// ---- BpeTokenizer ----------------------------------------------------------------------------

BpeTokenizer::BpeTokenizer(BpeTokenizerParts parts) : p_(std::move(parts)) {
  if (!p_.model) fail("BpeTokenizer needs a model");
  TokenId max_id = p_.model->max_id();
  std::vector<AddedToken> raw, normalized;
  for (const auto& t : p_.added_tokens) {
    max_id = std::max(max_id, t.id);
    added_text_.emplace(t.id, t.content);
    (t.normalized ? normalized : raw).push_back(t);
  }
  raw_matcher_ = AddedTokenMatcher(std::move(raw));
  normalized_matcher_ = AddedTokenMatcher(std::move(normalized));
  vocab_size_ = max_id + 1;
}

std::vector<std::string> BpeTokenizer::pre_tokenize(std::string_view segment) const {
  std::vector<std::string> words;
  std::string text = p_.normalizer ? p_.normalizer->normalize(std::string(segment)) : std::string(segment);
  if (text.empty()) return words;
  words.push_back(std::move(text));
  if (p_.pre_tokenizer) p_.pre_tokenizer->pre_tokenize(words, true);
  return words;
}

void BpeTokenizer::encode_segment(std::string_view text, bool first, bool parse_special,
                                  std::vector<TokenId>& out) const {
  std::string norm = p_.normalizer ? p_.normalizer->normalize(std::string(text)) : std::string(text);
  auto encode_words = [&](std::string_view t, bool at_start) {
    if (t.empty()) return;
    std::vector<std::string> words{std::string(t)};
    if (p_.pre_tokenizer) p_.pre_tokenizer->pre_tokenize(words, at_start);
    for (const auto& w : words) p_.model->encode_word(w, out);
  };
  if (normalized_matcher_.empty()) {
    encode_words(norm, first);
    return;
  }
  std::vector<AddedTokenMatcher::Piece> pieces;
  normalized_matcher_.split(norm, parse_special, pieces);
  for (const auto& pc : pieces) {
    if (pc.id >= 0) {
      out.push_back(pc.id);
    } else {
      encode_words(std::string_view(norm).substr(pc.begin, pc.end - pc.begin), first && pc.begin == 0);
    }
  }
}

std::vector<TokenId> BpeTokenizer::encode(std::string_view text, const EncodeOptions& opts) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  if (opts.add_special) out.insert(out.end(), p_.prefix.begin(), p_.prefix.end());
  std::vector<AddedTokenMatcher::Piece> pieces;
  raw_matcher_.split(text, opts.parse_special, pieces);
  for (const auto& pc : pieces) {
    if (pc.id >= 0) {
      out.push_back(pc.id);
    } else {
      encode_segment(text.substr(pc.begin, pc.end - pc.begin), pc.begin == 0, opts.parse_special, out);
    }
  }
  if (opts.add_special) out.insert(out.end(), p_.suffix.begin(), p_.suffix.end());
  return out;
}

const std::string* BpeTokenizer::token_str(TokenId id) const {
  auto it = added_text_.find(id);
  if (it != added_text_.end()) return &it->second;
  return p_.model->id_to_token(id);
}

std::string BpeTokenizer::decode_tokens(const std::vector<TokenId>& ids, bool streaming) const {
  using Mode = BpeTokenizerParts::DecodeMode;
  if (p_.decode_mode == Mode::GgufByteLevel) {
    std::string out;
    for (TokenId id : ids) {
      const std::string* s = token_str(id);
      if (s == nullptr) continue;
      const bool raw = id >= 0 && static_cast<size_t>(id) < p_.raw_text.size() && p_.raw_text[static_cast<size_t>(id)];
      out += raw ? *s : unicode::byte_level_to_bytes(*s);
    }
    return out;
  }
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (TokenId id : ids) {
    // Ids that name no token are skipped, as HF does.
    if (const std::string* s = token_str(id)) tokens.push_back(*s);
  }
  std::string out;
  if (p_.decode_mode == Mode::Decoder && p_.decoder) {
    p_.decoder->decode_chain(tokens, streaming);
    for (const auto& t : tokens) out += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
  }
  return out;
}

std::string BpeTokenizer::decode(const std::vector<TokenId>& ids) const { return decode_tokens(ids, false); }

std::string BpeTokenizer::token_text(TokenId id) const {
  if (token_str(id) == nullptr) fail("token id " + std::to_string(id) + " is not in the vocabulary");
  return decode_tokens({id}, true);
}

std::string BpeTokenizer::token_string(TokenId id) const {
  const std::string* s = token_str(id);
  if (s == nullptr) fail("token id " + std::to_string(id) + " is not in the vocabulary");
  return *s;
}

// ---- GGUF "gpt2" vocabularies ----------------------------------------------------------------

namespace {

// The pre-tokenizer regexes llama.cpp (llama-vocab.cpp) uses for each tokenizer.ggml.pre.
constexpr const char* kLlama3Re =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Re =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kGpt2Re = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

struct GgufPreSpec {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool add_bos = false;
};

bool one_of(const std::string& s, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (s == n) return true;
  return false;
}

GgufPreSpec gguf_pre_spec(const std::string& pre, const std::string& path) {
  if (pre.empty() || pre == "default") {
    return {{"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Re, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false};
  }
  if (one_of(pre, {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})) {
    return {{kLlama3Re}, true, true};
  }
  if (one_of(pre, {"dbrx", "smaug-bpe"})) return {{kLlama3Re}, false, false};
  if (pre == "deepseek-coder") {
    return {{"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+",
             "\\p{N}"},
            false,
            false};
  }
  if (pre == "falcon") {
    return {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2Re, "[0-9][0-9][0-9]"}, false, false};
  }
  if (one_of(pre, {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "jina-v2-code",
                   "roberta-bpe", "mpt", "olmo", "jais"})) {
    return {{kGpt2Re}, false, false};
  }
  if (one_of(pre, {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"})) {
    return {{"\\p{N}", kGpt2Re}, false, false};
  }
  if (one_of(pre, {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"})) return {{kQwen2Re}, false, false};
  fail_file(path, "unsupported tokenizer.ggml.pre '" + pre + "'");
}

}  // namespace

std::unique_ptr<Tokenizer> make_gguf_bpe_tokenizer(const GGUFMetadata& md, const std::string& path) {
  const std::string model = md.get_string("tokenizer.ggml.model", "");
  if (model != "gpt2") fail_file(path, "tokenizer.ggml.model is '" + model + "', expected 'gpt2'");
  std::vector<std::string> tokens = md.get_string_array("tokenizer.ggml.tokens");
  if (tokens.empty()) fail_file(path, "tokenizer.ggml.tokens is empty");
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) fail_file(path, "tokenizer.ggml.tokens is too large");
  std::vector<int32_t> types;
  if (md.contains("tokenizer.ggml.token_type")) {
    types = md.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != tokens.size()) {
      fail_file(path, "tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
                          std::to_string(tokens.size()) + " tokens");
    }
  } else {
    types.assign(tokens.size(), 1);
  }
  if (!md.contains("tokenizer.ggml.merges")) fail_file(path, "tokenizer.ggml.merges is missing");
  const std::vector<std::string> merges = md.get_string_array("tokenizer.ggml.merges");
  const GgufPreSpec spec = gguf_pre_spec(md.get_string("tokenizer.ggml.pre", "default"), path);

  const auto n = static_cast<TokenId>(tokens.size());
  auto token_id = [&](const char* key) -> TokenId {
    const int64_t v = md.get_int(key, -1);
    if (v < -1 || v >= n) fail_file(path, std::string(key) + " = " + std::to_string(v) + " is out of range");
    return static_cast<TokenId>(v);
  };

  BpeTokenizerParts parts;
  parts.kind = "bpe-gguf";
  parts.bos = token_id("tokenizer.ggml.bos_token_id");
  parts.eos = token_id("tokenizer.ggml.eos_token_id");
  const TokenId unk = token_id("tokenizer.ggml.unknown_token_id");
  parts.raw_text.assign(tokens.size(), 0);
  std::vector<std::pair<std::string, TokenId>> vocab;
  vocab.reserve(tokens.size());
  for (TokenId i = 0; i < n; ++i) {
    const int32_t t = types[static_cast<size_t>(i)];
    // 2 unknown, 3 control, 4 user-defined: written as plain text, matched in the input as is.
    if (t == 2 || t == 3 || t == 4) {
      parts.raw_text[static_cast<size_t>(i)] = 1;
      if (!tokens[static_cast<size_t>(i)].empty()) {
        AddedToken at;
        at.id = i;
        at.content = tokens[static_cast<size_t>(i)];
        at.special = t != 4;
        parts.added_tokens.push_back(std::move(at));
      }
    }
    vocab.emplace_back(std::move(tokens[static_cast<size_t>(i)]), i);
  }
  BpeModel::Options opt;
  opt.ignore_merges = spec.ignore_merges;
  if (unk >= 0) opt.unk_token = vocab[static_cast<size_t>(unk)].first;
  parts.model = std::make_unique<BpeModel>(std::move(vocab), opt);
  parts.model->reserve_merges(merges.size());
  for (const auto& m : merges) {
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) fail_file(path, "tokenizer.ggml.merges entry '" + m + "' has no space");
    parts.model->add_merge(std::string_view(m).substr(0, sp), std::string_view(m).substr(sp + 1));
  }

  std::vector<std::unique_ptr<PreTokenizer>> pre;
  for (const auto& re : spec.regexes)
    pre.push_back(std::make_unique<SplitPreTokenizer>(std::make_unique<Regex>(re), SplitBehavior::Isolated, false));
  pre.push_back(std::make_unique<ByteLevelPreTokenizer>(false, false));
  parts.pre_tokenizer = std::make_unique<SequencePreTokenizer>(std::move(pre));

  const bool add_bos = md.get_bool("tokenizer.ggml.add_bos_token", spec.add_bos);
  const bool add_eos = md.get_bool("tokenizer.ggml.add_eos_token", false);
  if (add_bos && parts.bos >= 0) parts.prefix.push_back(parts.bos);
  if (add_eos && parts.eos >= 0) parts.suffix.push_back(parts.eos);
  parts.decode_mode = BpeTokenizerParts::DecodeMode::GgufByteLevel;
  return std::make_unique<BpeTokenizer>(std::move(parts));
}

}  // namespace qeval
