#pragma once
// BPE tokenizers: HF tokenizer.json (byte-level BPE such as GPT-2/Llama-3/Qwen, and
// SentencePiece-style BPE with byte fallback such as Llama-2/Mistral) and GGUF vocabularies
// with tokenizer.ggml.model == "gpt2".
//
// Encoding follows HF tokenizers: added tokens are cut out of the raw text first (leftmost,
// longest match; tokens flagged `normalized` are matched after normalization instead); each
// text segment in between is normalized, pre-tokenized into words, and each word is encoded by
// rank-ordered BPE merges. GGUF vocabularies are set up the way llama.cpp sets them up: the
// pre-tokenizer regexes that tokenizer.ggml.pre names, control/user-defined/unknown tokens
// matched as text, BOS/EOS from tokenizer.ggml.*.
//
// Invalid UTF-8 input never fails: see unicode.h for how invalid bytes are carried.
// decode() returns raw bytes: byte tokens that do not form valid UTF-8 are passed through
// unchanged (HF would substitute U+FFFD), so decode(encode(x)) == x also for invalid input.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "qeval/tokenizer/pretokenizer.h"
#include "qeval/tokenizer/tokenizer.h"

namespace qeval {

class GGUFMetadata;

// HF tokenizer.json (+ its sibling tokenizer_config.json when present, for bos/eos and
// add_bos_token/add_eos_token). Throws qeval::Error "<path>: <problem>".
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path);
// GGUF vocabulary with tokenizer.ggml.model == "gpt2"; `path` names the file in errors.
std::unique_ptr<Tokenizer> make_gguf_bpe_tokenizer(const GGUFMetadata& md, const std::string& path);

// ---- components --------------------------------------------------------------------------

// The BPE model: vocabulary, merge ranks and the merge algorithm for one word.
class BpeModel {
 public:
  struct Options {
    bool byte_fallback = false;   // unknown characters become <0xXX> byte tokens
    bool fuse_unk = false;        // consecutive unknown characters give one unk token
    bool ignore_merges = false;   // a word that is itself in the vocabulary is emitted whole
    std::string unk_token;        // empty: unknown characters are dropped (as HF does)
    std::string continuing_subword_prefix;
    std::string end_of_word_suffix;
  };
  // `vocab` lists (token, id) pairs; ids need not be dense. The first pair wins on duplicates.
  BpeModel(std::vector<std::pair<std::string, TokenId>> vocab, Options options);

  // Adds the merge (a, b); its rank is the number of add_merge calls before it. Returns false
  // (and adds nothing) when a, b or their merge is not in the vocabulary. A repeated pair keeps
  // its first (lower) rank.
  bool add_merge(std::string_view a, std::string_view b);
  void reserve_merges(size_t n) { merges_.reserve(n); }

  // Appends the ids of one pre-tokenized word. Thread-safe (a small word cache is guarded).
  // decode() skips ids that name no token (as HF does); token_text/token_string throw for them.
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;

  TokenId token_to_id(std::string_view token) const;  // -1 when absent
  const std::string* id_to_token(TokenId id) const;   // nullptr when absent
  TokenId max_id() const { return static_cast<TokenId>(id_to_token_.size()) - 1; }
  size_t merge_count() const { return merges_.size(); }
  const Options& options() const { return options_; }

 private:
  struct Merge {
    int32_t rank;
    TokenId id;
  };
  static uint64_t pair_key(TokenId a, TokenId b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  // Open-addressing map (id pair -> merge); ids are < 2^31, so ~0 never is a key.
  class MergeTable {
   public:
    void reserve(size_t n);
    bool insert(uint64_t key, Merge m);  // false when the key is present
    const Merge* find(uint64_t key) const;
    size_t size() const { return size_; }
   private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    size_t slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
    std::vector<uint64_t> keys_;
    std::vector<Merge> vals_;
    size_t size_ = 0;
    int shift_ = 64;
  };
  // Open-addressing map token text -> id over the strings of id_to_token_.
  class VocabIndex {
   public:
    void build(const std::vector<std::string>& strings, const std::vector<TokenId>& ids);
    TokenId find(std::string_view s, const std::vector<std::string>& strings) const;
   private:
    static uint64_t hash(std::string_view s);
    std::vector<uint64_t> hashes_;
    std::vector<TokenId> ids_;  // -1: empty slot
    size_t mask_ = 0;
  };
  void merge_word(std::string_view word, std::vector<TokenId>& out) const;

  Options options_;
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> has_id_;
  VocabIndex index_;
  MergeTable merges_;
  int32_t next_rank_ = 0;
  std::string scratch_;
  TokenId unk_id_ = -1;
  TokenId byte_ids_[256];

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
};

// One added token of tokenizer.json (or a control/user-defined token of a GGUF vocabulary).
struct AddedToken {
  TokenId id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;       // absorbs the whitespace before it
  bool rstrip = false;       // absorbs the whitespace after it
  bool single_word = false;  // only matched when not inside a word
  bool normalized = false;   // matched in the normalized text instead of the raw text
};

// Finds added tokens in text: leftmost occurrence first, longest token at that position.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  struct Piece {
    size_t begin = 0, end = 0;  // text range (for a token: the matched range, strip included)
    TokenId id = -1;            // -1: ordinary text
  };
  // Cuts `text` into text pieces and token pieces. With parse_special false, special tokens
  // are not matched (non-special added tokens still are, as in HF's split_special_tokens).
  void split(std::string_view text, bool parse_special, std::vector<Piece>& out) const;
  bool empty() const { return tokens_.empty(); }

 private:
  std::vector<AddedToken> tokens_;
  std::vector<int32_t> node_token_;                    // trie node -> token index or -1
  std::unordered_map<uint64_t, int32_t> edges_;        // (node << 8 | byte) -> child node
  bool first_byte_[256] = {};
};

// Decoders act on the list of token strings, as HF's decode_chain does. `streaming` is set
// when decoding one token on its own for token_text(): no stripping of a leading space.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens, bool streaming) const = 0;
};

class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens, bool streaming) const override;
};
class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::string literal, std::string content) : literal_(std::move(literal)), content_(std::move(content)) {}
  ReplaceDecoder(std::unique_ptr<Regex> regex, std::string content) : regex_(std::move(regex)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens, bool streaming) const override;
 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens, bool streaming) const override;
};
class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens, bool streaming) const override;
};
class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens, bool streaming) const override;
 private:
  std::string content_;  // one character
  size_t start_, stop_;
};
class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens, bool streaming) const override;
 private:
  std::string replacement_;
  bool strip_first_;
};
class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens, bool streaming) const override;
 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// ---- the tokenizer -----------------------------------------------------------------------

struct BpeTokenizerParts {
  std::string kind = "bpe";
  std::unique_ptr<Normalizer> normalizer;      // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer; // may be null: each segment is one word
  std::unique_ptr<BpeModel> model;
  std::vector<AddedToken> added_tokens;
  std::vector<TokenId> prefix, suffix;         // what add_special puts around the ids
  TokenId bos = -1, eos = -1;

  enum class DecodeMode {
    Decoder,         // run `decoder` over all token strings (HF)
    JoinWithSpace,   // HF without a decoder: token strings joined by " "
    GgufByteLevel,   // llama.cpp gpt2 vocab: raw_text tokens as written, others byte-level decoded
  };
  DecodeMode decode_mode = DecodeMode::Decoder;
  std::unique_ptr<Decoder> decoder;
  std::vector<uint8_t> raw_text;  // GgufByteLevel: per id, 1 = decode as its text
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeTokenizerParts parts);

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& opts = {}) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  std::string token_text(TokenId id) const override;
  std::string token_string(TokenId id) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  TokenId bos_id() const override { return p_.bos; }
  TokenId eos_id() const override { return p_.eos; }
  bool adds_bos() const override { return !p_.prefix.empty() && p_.bos >= 0 && p_.prefix.front() == p_.bos; }
  bool adds_eos() const override { return !p_.suffix.empty() && p_.eos >= 0 && p_.suffix.back() == p_.eos; }
  std::string kind() const override { return p_.kind; }

  const BpeModel& model() const { return *p_.model; }
  // Words the pre-tokenizer makes of one text segment (for tests and diagnostics).
  std::vector<std::string> pre_tokenize(std::string_view segment) const;

 private:
  const std::string* token_str(TokenId id) const;
  void encode_segment(std::string_view text, bool first, bool parse_special, std::vector<TokenId>& out) const;
  std::string decode_tokens(const std::vector<TokenId>& ids, bool streaming) const;

  BpeTokenizerParts p_;
  AddedTokenMatcher raw_matcher_;         // added tokens with normalized == false
  AddedTokenMatcher normalized_matcher_;  // added tokens with normalized == true
  std::unordered_map<TokenId, std::string> added_text_;
  int32_t vocab_size_ = 0;
};

}  // namespace qeval
