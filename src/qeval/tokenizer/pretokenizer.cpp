#include "qeval/tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <tuple>

#include "qeval/util/error.h"

namespace qeval {

namespace {

// Oniguruma's whitespace set, as the inside of a PCRE2 character class, and its complement.
constexpr const char* kWs =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";
constexpr const char* kNotWs =
    "\\x{0}-\\x{8}\\x{E}-\\x{1F}\\x{21}-\\x{84}\\x{86}-\\x{9F}\\x{A1}-\\x{167F}\\x{1681}-\\x{1FFF}"
    "\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{10FFFF}";

}  // namespace

const char* const kGpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

std::string translate_onig_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t i = 0;
  const size_t n = p.size();
  while (i < n) {
    const char c = p[i];
    if (c == '\\' && i + 1 < n) {
      const char d = p[i + 1];
      if (d == 'Q') {  // \Q...\E: literal text, copied untouched
        const size_t end = p.find("\\E", i + 2);
        const size_t stop = end == std::string_view::npos ? n : end + 2;
        out.append(p.substr(i, stop - i));
        i = stop;
        continue;
      }
      if (d == 's') {
        if (in_class) {
          out += kWs;
        } else {
          out.append("[").append(kWs).append("]");
        }
        i += 2;
        continue;
      }
      if (d == 'S') {
        if (in_class) {
          out += kNotWs;
        } else {
          out.append("[^").append(kWs).append("]");
        }
        i += 2;
        continue;
      }
      out.append(p.substr(i, 2));
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < n && p[i] == '^') out += p[i++];
      if (i < n && p[i] == ']') out += p[i++];  // a leading ']' is a literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {  // POSIX class [:name:]
      const size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
    ++i;
  }
  return out;
}

std::string regex_escape(std::string_view literal) {
  std::string out;
  out.reserve(literal.size() * 2);
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain = u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!plain) {
      if (u < 0x20 || u == 0x7F) {  // control characters as \x{..}
        static const char* hex = "0123456789ABCDEF";
        out += "\\x{";
        out += hex[u >> 4];
        out += hex[u & 15];
        out += '}';
        continue;
      }
      if (c != ' ') out += '\\';
    }
    out += c;
  }
  return out;
}

// ---- Regex -----------------------------------------------------------------------------------

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() {
    if (code != nullptr) pcre2_code_free(code);
  }
};

namespace {

// Per-thread match state: match data (only the whole-match pair is read) and a JIT stack big
// enough for long runs of one character class.
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    if (context != nullptr && stack != nullptr) pcre2_jit_stack_assign(context, nullptr, stack);
    if (data == nullptr || context == nullptr) fail("out of memory creating PCRE2 match data");
  }
  ~MatchScratch() {
    if (stack != nullptr) pcre2_jit_stack_free(stack);
    if (context != nullptr) pcre2_match_context_free(context);
    if (data != nullptr) pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof(buf));
  if (n < 0) return "PCRE2 error " + std::to_string(code);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

}  // namespace

Regex::Regex(std::string_view onig_pattern) : pattern_(onig_pattern), impl_(std::make_unique<Impl>()) {
  const std::string translated = translate_onig_pattern(onig_pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (impl_->code == nullptr) {
    fail("invalid regex '" + pattern_ + "': " + pcre2_message(err) + " at offset " + std::to_string(err_off) +
         " of the translated pattern");
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

bool Regex::jit() const { return impl_->jit; }

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
  auto& s = scratch();
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const size_t n = subject.size();
  size_t pos = 0;
  while (pos <= n) {
    const int rc = pcre2_match(impl_->code, subj, n, pos, 0, s.data, s.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("regex '" + pattern_ + "' failed to match: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
    const size_t b = ov[0];
    const size_t e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {
      if (b >= n) break;
      pos = b + unicode::utf8_next(subject, b).len;
    }
  }
}

// ---- splitting -------------------------------------------------------------------------------

void split_pieces(std::string_view text, const std::vector<std::pair<size_t, size_t>>& matches,
                  SplitBehavior behavior, bool invert, std::vector<std::string>& out) {
  struct Seg {
    size_t b, e;
    bool match;
  };
  std::vector<Seg> segs;
  segs.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b > prev) segs.push_back({prev, b, invert});
    if (e > b) segs.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < text.size()) segs.push_back({prev, text.size(), invert});

  auto emit = [&](size_t b, size_t e) {
    if (e > b) out.emplace_back(text.substr(b, e - b));
  };
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const auto& s : segs)
        if (!s.match) emit(s.b, s.e);
      break;
    case SplitBehavior::Isolated:
      for (const auto& s : segs) emit(s.b, s.e);
      break;
    case SplitBehavior::Contiguous: {
      // Runs of adjacent matches become one piece; gaps stay as they are.
      size_t i = 0;
      while (i < segs.size()) {
        size_t j = i + 1;
        if (segs[i].match)
          while (j < segs.size() && segs[j].match) ++j;
        emit(segs[i].b, segs[j - 1].e);
        i = j;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      // A match is appended to the piece before it when that piece is a gap.
      std::vector<std::pair<size_t, size_t>> acc;
      bool prev_match = false;
      for (const auto& s : segs) {
        if (s.match && !prev_match && !acc.empty()) {
          acc.back().second = s.e;
        } else {
          acc.emplace_back(s.b, s.e);
        }
        prev_match = s.match;
      }
      for (const auto& [b, e] : acc) emit(b, e);
      break;
    }
    case SplitBehavior::MergedWithNext: {
      // A match is prepended to the piece after it when that piece is a gap.
      size_t i = 0;
      while (i < segs.size()) {
        if (segs[i].match && i + 1 < segs.size() && !segs[i + 1].match) {
          emit(segs[i].b, segs[i + 1].e);
          i += 2;
        } else {
          emit(segs[i].b, segs[i].e);
          ++i;
        }
      }
      break;
    }
  }
}

// ---- normalizers -----------------------------------------------------------------------------

std::string PrependNormalizer::normalize(std::string text) const {
  if (text.empty()) return text;
  return prefix_ + text;
}

ReplaceNormalizer::ReplaceNormalizer(std::string literal, std::string content)
    : literal_(std::move(literal)), content_(std::move(content)) {}
ReplaceNormalizer::ReplaceNormalizer(std::unique_ptr<Regex> regex, std::string content)
    : regex_(std::move(regex)), content_(std::move(content)) {}

std::string ReplaceNormalizer::normalize(std::string text) const {
  std::vector<std::pair<size_t, size_t>> m;
  if (regex_) {
    regex_->find_all(text, m);
  } else if (!literal_.empty()) {
    for (size_t p = text.find(literal_); p != std::string::npos; p = text.find(literal_, p + literal_.size()))
      m.emplace_back(p, p + literal_.size());
  }
  if (m.empty()) return text;
  std::string out;
  out.reserve(text.size() + m.size() * content_.size());
  size_t prev = 0;
  for (const auto& [b, e] : m) {
    out.append(text, prev, b - prev);
    out += content_;
    prev = e;
  }
  out.append(text, prev, std::string::npos);
  return out;
}

std::string StripNormalizer::normalize(std::string text) const {
  size_t b = 0;
  size_t e = text.size();
  if (left_) {
    while (b < e) {
      auto c = unicode::utf8_next(text, b);
      if (!c.valid || !unicode::is_whitespace(c.cp)) break;
      b += c.len;
    }
  }
  if (right_) {
    while (e > b) {
      size_t s = e - 1;
      while (s > b && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
      auto c = unicode::utf8_next(text, s);
      if (!c.valid || s + c.len != e || !unicode::is_whitespace(c.cp)) break;
      e = s;
    }
  }
  return text.substr(b, e - b);
}

std::string SequenceNormalizer::normalize(std::string text) const {
  for (const auto& p : parts_) text = p->normalize(std::move(text));
  return text;
}

// ---- pre-tokenizers --------------------------------------------------------------------------

void SplitPreTokenizer::pre_tokenize(std::vector<std::string>& pieces, bool) const {
  std::vector<std::string> out;
  out.reserve(pieces.size() * 4);
  std::vector<std::pair<size_t, size_t>> m;
  for (const auto& p : pieces) {
    m.clear();
    regex_->find_all(p, m);
    split_pieces(p, m, behavior_, invert_, out);
  }
  pieces.swap(out);
}

ByteLevelPreTokenizer::ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
    : add_prefix_space_(add_prefix_space) {
  if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern);
}

void ByteLevelPreTokenizer::pre_tokenize(std::vector<std::string>& pieces, bool) const {
  std::vector<std::string> out;
  out.reserve(pieces.size() * 4);
  std::vector<std::pair<size_t, size_t>> m;
  for (auto& p : pieces) {
    if (add_prefix_space_ && (p.empty() || p[0] != ' ')) p.insert(p.begin(), ' ');
    if (regex_) {
      m.clear();
      regex_->find_all(p, m);
      split_pieces(p, m, SplitBehavior::Isolated, false, out);
    } else if (!p.empty()) {
      out.push_back(std::move(p));
    }
  }
  for (auto& p : out) p = unicode::bytes_to_byte_level(p);
  pieces.swap(out);
}

DigitsPreTokenizer::DigitsPreTokenizer(bool individual) : regex_(individual ? "\\p{N}" : "\\p{N}+") {}

void DigitsPreTokenizer::pre_tokenize(std::vector<std::string>& pieces, bool) const {
  std::vector<std::string> out;
  std::vector<std::pair<size_t, size_t>> m;
  for (const auto& p : pieces) {
    m.clear();
    regex_.find_all(p, m);
    split_pieces(p, m, SplitBehavior::Isolated, false, out);
  }
  pieces.swap(out);
}

WhitespaceSplitPreTokenizer::WhitespaceSplitPreTokenizer() : regex_("\\s+") {}

void WhitespaceSplitPreTokenizer::pre_tokenize(std::vector<std::string>& pieces, bool) const {
  std::vector<std::string> out;
  std::vector<std::pair<size_t, size_t>> m;
  for (const auto& p : pieces) {
    m.clear();
    regex_.find_all(p, m);
    split_pieces(p, m, SplitBehavior::Removed, false, out);
  }
  pieces.swap(out);
}

MetaspacePreTokenizer::MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
    : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}

void MetaspacePreTokenizer::pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const {
  std::vector<std::string> out;
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::string s;
    s.reserve(pieces[i].size() + replacement_.size());
    for (char c : pieces[i]) {
      if (c == ' ') {
        s += replacement_;
      } else {
        s += c;
      }
    }
    const bool prepend = prepend_ == Prepend::Always || (prepend_ == Prepend::First && first_segment && i == 0);
    if (prepend && !s.empty() && s.compare(0, replacement_.size(), replacement_) != 0) s.insert(0, replacement_);
    if (!split_ || replacement_.empty()) {
      if (!s.empty()) out.push_back(std::move(s));
      continue;
    }
    std::vector<std::pair<size_t, size_t>> m;
    for (size_t p = s.find(replacement_); p != std::string::npos; p = s.find(replacement_, p + replacement_.size()))
      m.emplace_back(p, p + replacement_.size());
    split_pieces(s, m, SplitBehavior::MergedWithNext, false, out);
  }
  pieces.swap(out);
}

void SequencePreTokenizer::pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const {
  for (const auto& p : parts_) p->pre_tokenize(pieces, first_segment);
}

}  // namespace qeval
