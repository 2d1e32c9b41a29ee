#pragma once
// Text stages in front of a BPE model: regexes with HF (Oniguruma) semantics, normalizers and
// pre-tokenizers as tokenizer.json describes them. A pre-tokenizer turns one text segment (the
// text between two added tokens) into the list of words the model encodes one by one.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qeval/tokenizer/unicode.h"

namespace qeval {

// Rewrites an Oniguruma pattern (HF tokenizers, llama.cpp) for PCRE2 (UTF + UCP): \s and \S,
// alone or inside a [...] class, become explicit classes over Oniguruma's whitespace set
// (U+0009-U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
// U+205F, U+3000). PCRE2's own \s differs (e.g. it matches U+180E). Everything else is passed
// through; \Q...\E is respected.
std::string translate_onig_pattern(std::string_view pattern);
// A pattern that matches `literal` exactly.
std::string regex_escape(std::string_view literal);

// A compiled pattern (PCRE2 8-bit, UTF, UCP, MATCH_INVALID_UTF, JIT when available).
// Thread-safe: match() keeps no state in the object. Invalid UTF-8 bytes in the subject are
// never part of a match (PCRE2_MATCH_INVALID_UTF), so they end up in the gaps between matches.
class Regex {
 public:
  // Throws qeval::Error "invalid regex '<pattern>': <reason>".
  explicit Regex(std::string_view onig_pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-empty, non-overlapping matches, left to right, as [begin, end) byte offsets.
  // After an empty match the search resumes one character further on (as Oniguruma's
  // find_iter does); empty matches are not reported.
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;
  const std::string& pattern() const { return pattern_; }
  bool jit() const;

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
// Cuts `text` at the given matches (sorted, non-overlapping) as HF's Split does: matches and
// the gaps between them become pieces according to `behavior` (`invert` swaps the roles of
// matches and gaps). Empty pieces are dropped. Appends to `out`.
void split_pieces(std::string_view text, const std::vector<std::pair<size_t, size_t>>& matches,
                  SplitBehavior behavior, bool invert, std::vector<std::string>& out);

// ---- normalizers ---------------------------------------------------------------------------

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

class UnicodeNormalizer final : public Normalizer {  // NFC, NFD, NFKC, NFKD
 public:
  explicit UnicodeNormalizer(unicode::NormalForm f) : form_(f) {}
  std::string normalize(std::string text) const override { return unicode::normalize(text, form_); }
 private:
  unicode::NormalForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  std::string normalize(std::string text) const override { return unicode::to_lower(text); }
};

// Prepends a string to a non-empty text (HF "Prepend").
class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string text) const override;
 private:
  std::string prefix_;
};

// Replaces every match of a literal string or a regex (HF "Replace").
class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::string content);                    // String pattern
  ReplaceNormalizer(std::unique_ptr<Regex> regex, std::string content);           // Regex pattern
  std::string normalize(std::string text) const override;
 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

// Removes leading and/or trailing whitespace (HF "Strip").
class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string text) const override;
 private:
  bool left_, right_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string normalize(std::string text) const override;
 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// ---- pre-tokenizers ------------------------------------------------------------------------

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their pre-tokenized pieces. `first_segment` says whether the pieces
  // come from the segment at the very start of the input (Metaspace prepend_scheme "first").
  virtual void pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const = 0;
};

// HF "Split" (regex or literal pattern) and llama.cpp's regex lists (each regex Isolated).
class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const override;
 private:
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

// The GPT-2 regex used by ByteLevel with use_regex=true.
extern const char* const kGpt2Pattern;

// HF "ByteLevel": optional prefix space, optional GPT-2 regex split, then every byte of every
// piece is mapped to the byte-level alphabet.
class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex);
  void pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const override;
 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

// HF "Digits": digits (\p{N}) isolated one by one or in runs.
class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual);
  void pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const override;
 private:
  Regex regex_;
};

// HF "WhitespaceSplit": split on whitespace, whitespace removed.
class WhitespaceSplitPreTokenizer final : public PreTokenizer {
 public:
  WhitespaceSplitPreTokenizer();
  void pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const override;
 private:
  Regex regex_;
};

// HF "Metaspace": spaces become `replacement`, which is prepended per `prepend`, and the text is
// optionally split before each replacement character.
class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  enum class Prepend { Always, Never, First };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split);
  void pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const override;
 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<std::string>& pieces, bool first_segment) const override;
 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace qeval
