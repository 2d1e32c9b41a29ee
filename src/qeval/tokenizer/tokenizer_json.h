#pragma once
// HF tokenizer.json -> BpeTokenizer. Supported (everything else is rejected with an error that
// names the file and the component type):
//   normalizer     null, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence
//   pre_tokenizer  null, Split, ByteLevel, Digits, Metaspace, WhitespaceSplit, Sequence
//   model          BPE (vocab; merges as "a b" strings or ["a","b"] pairs; byte_fallback,
//                  fuse_unk, unk_token, ignore_merges, continuing_subword_prefix,
//                  end_of_word_suffix; dropout must be null or 0)
//   added_tokens   special and non-special, lstrip/rstrip/single_word/normalized
//   post_processor null, TemplateProcessing (single), ByteLevel, RobertaProcessing,
//                  BertProcessing, Sequence
//   decoder        null, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence
// tokenizer_config.json (optional) supplies bos_token/eos_token, and add_bos_token /
// add_eos_token when present override what the post-processor adds (as transformers'
// Llama-style tokenizers do).
#include <memory>
#include <string>
#include <string_view>

#include "qeval/tokenizer/bpe_tokenizer.h"

namespace qeval {

// `json_label` / `config_label` name the two texts in errors; `config_text` may be empty.
std::unique_ptr<BpeTokenizer> parse_tokenizer_json(std::string_view json_text, const std::string& json_label,
                                                   std::string_view config_text = {},
                                                   const std::string& config_label = {});

}  // namespace qeval
