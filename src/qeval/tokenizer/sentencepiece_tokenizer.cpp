#include "qeval/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>
#include <string_view>
#include <utility>

#include "qeval/util/error.h"

namespace qeval {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581

std::string unescape_spaces(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
      out += ' ';
      i += kSpaceMarker.size();
    } else {
      out += piece[i++];
    }
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xAB>" -> 0xAB; -1 when the piece is not of that form.
int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, const SentencePieceOptions& options)
      : path_(path), options_(options) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) fail_file(path, "cannot open SentencePiece model (no such file)");
    const auto status = sp_.Load(path);
    if (!status.ok()) fail_file(path, "not a valid SentencePiece model: " + std::string(status.message()));
    n_ = sp_.GetPieceSize();
    if (n_ <= 0) fail_file(path, "SentencePiece model has no pieces");

    for (int id = 0; id < n_; ++id) {
      if (sp_.IsControl(id) || sp_.IsUnknown(id)) {
        std::string text = sp_.IdToPiece(id);
        if (!text.empty()) specials_.emplace_back(std::move(text), id);
      }
    }
    // Longest first, so that a scan takes the longest special text at each position.
    std::stable_sort(specials_.begin(), specials_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

    // Does SentencePiece drop the leading U+2581 of the first piece (add_dummy_prefix or
    // remove_extra_whitespaces)? Probe with one normal piece that starts with the marker.
    for (int id = 0; id < n_; ++id) {
      if (sp_.IsControl(id) || sp_.IsUnknown(id) || sp_.IsByte(id) || sp_.IsUnused(id)) continue;
      const std::string piece = sp_.IdToPiece(id);
      if (piece.rfind(kSpaceMarker, 0) != 0) continue;
      std::string decoded;
      if (sp_.Decode(std::vector<int>{id}, &decoded).ok())
        strips_leading_space_ = decoded.size() + 1 == unescape_spaces(piece).size();
      break;
    }
  }

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& opts) const override {
    std::vector<TokenId> out;
    if (opts.add_special && options_.add_bos && bos_id() >= 0) out.push_back(bos_id());
    if (opts.parse_special && !specials_.empty()) {
      size_t seg_start = 0, i = 0;
      while (i < text.size()) {
        const std::pair<std::string, int>* hit = nullptr;
        for (const auto& sp : specials_) {
          if (text.compare(i, sp.first.size(), sp.first) == 0) {
            hit = &sp;
            break;
          }
        }
        if (hit == nullptr) {
          ++i;
          continue;
        }
        encode_text(text.substr(seg_start, i - seg_start), out);
        out.push_back(hit->second);
        i += hit->first.size();
        seg_start = i;
      }
      encode_text(text.substr(seg_start), out);
    } else {
      encode_text(text, out);
    }
    if (opts.add_special && options_.add_eos && eos_id() >= 0) out.push_back(eos_id());
    return out;
  }

  std::string decode(const std::vector<TokenId>& ids) const override {
    std::string out;
    bool at_start = true;
    std::vector<int> run;
    auto flush = [&] {
      if (run.empty()) return;
      std::string text;
      const auto status = sp_.Decode(run, &text);
      if (!status.ok()) fail_file(path_, "cannot decode: " + std::string(status.message()));
      // SentencePiece removes the dummy-prefix space of the first piece it sees; a run that
      // follows a special token is not at the start of the text, so put the space back.
      if (!at_start && strips_leading_space_ && !sp_.IsByte(run.front()) &&
          sp_.IdToPiece(run.front()).rfind(kSpaceMarker, 0) == 0)
        text.insert(0, 1, ' ');
      out += text;
      at_start = false;
      run.clear();
    };
    for (TokenId id : ids) {
      check_id(id);
      if (sp_.IsControl(id) || sp_.IsUnknown(id)) {
        flush();
        out += sp_.IdToPiece(id);
        at_start = false;
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  std::string token_text(TokenId id) const override {
    check_id(id);
    const std::string piece = sp_.IdToPiece(id);
    if (sp_.IsControl(id) || sp_.IsUnknown(id)) return piece;
    if (sp_.IsByte(id)) {
      const int b = byte_piece_value(piece);
      if (b >= 0) return std::string(1, static_cast<char>(b));
    }
    return unescape_spaces(piece);
  }

  std::string token_string(TokenId id) const override {
    check_id(id);
    return sp_.IdToPiece(id);
  }

  int32_t vocab_size() const override { return n_; }
  TokenId bos_id() const override { return sp_.bos_id(); }
  TokenId eos_id() const override { return sp_.eos_id(); }
  bool adds_bos() const override { return options_.add_bos && bos_id() >= 0; }
  bool adds_eos() const override { return options_.add_eos && eos_id() >= 0; }
  std::string kind() const override { return "sentencepiece"; }

 private:
  void check_id(TokenId id) const {
    if (id < 0 || id >= n_)
      fail_file(path_, "token id " + std::to_string(id) + " is out of range (vocabulary of " + std::to_string(n_) + ")");
  }

  void encode_text(std::string_view text, std::vector<TokenId>& out) const {
    if (text.empty()) return;
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) fail_file(path_, "cannot encode: " + std::string(status.message()));
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::string path_;
  SentencePieceOptions options_;
  sentencepiece::SentencePieceProcessor sp_;
  int n_ = 0;
  std::vector<std::pair<std::string, int>> specials_;
  bool strips_leading_space_ = true;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path, const SentencePieceOptions& options) {
  return std::make_unique<SentencePieceTokenizer>(path, options);
}

}  // namespace qeval
