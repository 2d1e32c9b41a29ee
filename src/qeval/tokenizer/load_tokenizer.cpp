// load_tokenizer(): picks the tokenizer implementation from what the path holds.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "qeval/io/gguf.h"
#include "qeval/io/model.h"
#include "qeval/tokenizer/bpe_tokenizer.h"
#include "qeval/tokenizer/sentencepiece_tokenizer.h"
#include "qeval/tokenizer/spm_gguf_tokenizer.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> from_gguf_metadata(const GGUFMetadata& md, const std::string& path) {
  if (!md.contains("tokenizer.ggml.model"))
    fail_file(path, "no tokenizer in this GGUF file (tokenizer.ggml.model is missing)");
  const std::string& kind = md.get_string("tokenizer.ggml.model");
  if (kind == "llama") return make_spm_gguf_tokenizer(md, path);
  if (kind == "gpt2") return make_gguf_bpe_tokenizer(md, path);
  fail_file(path, "unsupported tokenizer kind '" + kind +
                      "' (tokenizer.ggml.model); supported: 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)");
}

// add_bos_token / add_eos_token of an HF directory's tokenizer_config.json, where present.
SentencePieceOptions hf_sentencepiece_options(const fs::path& dir) {
  SentencePieceOptions opts;
  const fs::path config = dir / "tokenizer_config.json";
  std::error_code ec;
  if (!fs::is_regular_file(config, ec)) return opts;
  std::ifstream in(config, std::ios::binary);
  if (!in) fail_file(config.string(), "cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail_file(config.string(), std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object()) fail_file(config.string(), "expected a JSON object");
  auto flag = [&](const char* key, bool& out) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return;
    if (!it->is_boolean()) fail_file(config.string(), std::string("'") + key + "' should be true or false");
    out = it->get<bool>();
  };
  flag("add_bos_token", opts.add_bos);
  flag("add_eos_token", opts.add_eos);
  return opts;
}

std::string lower_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

// The first bytes of a file, to recognise a GGUF or JSON file whatever its name.
std::string file_head(const fs::path& p, size_t n) {
  std::ifstream in(p, std::ios::binary);
  std::string head(n, '\0');
  in.read(head.data(), static_cast<std::streamsize>(n));
  head.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return head;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::is_regular_file(p / "tokenizer.json", ec)) return load_tokenizer_json((p / "tokenizer.json").string());
    if (fs::is_regular_file(p / "tokenizer.model", ec))
      return load_sentencepiece_tokenizer((p / "tokenizer.model").string(), hf_sentencepiece_options(p));
    fail_file(path, "no tokenizer (tokenizer.json or tokenizer.model)");
  }
  if (!fs::exists(p, ec)) fail_file(path, "no such file or directory");

  const std::string ext = lower_extension(p);
  if (ext == ".gguf") return from_gguf_metadata(GGUFFile::open(path).metadata, path);
  if (ext == ".model") return load_sentencepiece_tokenizer(path);
  if (ext == ".json") return load_tokenizer_json(path);

  const std::string head = file_head(p, 64);
  if (head.rfind("GGUF", 0) == 0) return from_gguf_metadata(GGUFFile::open(path).metadata, path);
  const size_t first = head.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && head[first] == '{') return load_tokenizer_json(path);
  fail_file(path,
            "not a tokenizer: expected a GGUF file, a tokenizer.json, a SentencePiece .model or an HF model directory");
}

std::unique_ptr<Tokenizer> load_tokenizer(const Model& model) {
  if (model.format == ModelFormat::GGUF) return from_gguf_metadata(model.metadata, model.path);
  return load_tokenizer(model.path);
}

}  // namespace qeval
