#pragma once
// Chat prompts from a model's tokenizer.chat_template (GGUF metadata / tokenizer_config.json).
// Jinja is not interpreted: the template is recognized as one of the common families by its
// marker strings and rendered by QEval's own code.
//   chatml   "<|im_start|>"          <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
//   llama3   "<|start_header_id|>"   <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> ...
//   llama2   "[INST]"                [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
//   zephyr   "<|user|>"              <|{role}|>\n{content}</s>\n ... <|assistant|>\n
//   plain    (no template)           "System: ...\n\nUser: ...\n\nAssistant:" with a blank line between
//                                    turns; generation also stops at "\n\nUser:".
// BOS is not written: the prompt is encoded with the tokenizer's special tokens (BOS where it
// adds one), and special-token text in the prompt is parsed as special tokens.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qeval/serve/request.h"

namespace qeval::serve {

enum class ChatFormat { chatml, llama3, llama2, zephyr, plain };

std::string_view chat_format_name(ChatFormat f);
// "chatml", "llama3", "llama2", "zephyr", "plain"; nullopt otherwise.
std::optional<ChatFormat> chat_format_from_name(std::string_view name);
// The family of a Jinja template; nullopt when it is none of the known ones (an empty template
// gives plain).
std::optional<ChatFormat> detect_chat_format(std::string_view jinja_template);

struct ChatPrompt {
  std::string text;                // what to encode
  std::vector<std::string> stops;  // end-of-turn strings that end generation besides EOS
};

ChatPrompt render_chat(ChatFormat format, const std::vector<ChatMessage>& messages);

}  // namespace qeval::serve
