#include "qeval/serve/chat_template.h"

namespace qeval::serve {

std::string_view chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::chatml: return "chatml";
    case ChatFormat::llama3: return "llama3";
    case ChatFormat::llama2: return "llama2";
    case ChatFormat::zephyr: return "zephyr";
    case ChatFormat::plain: return "plain";
  }
  return "?";
}

std::optional<ChatFormat> chat_format_from_name(std::string_view name) {
  for (ChatFormat f : {ChatFormat::chatml, ChatFormat::llama3, ChatFormat::llama2, ChatFormat::zephyr, ChatFormat::plain})
    if (chat_format_name(f) == name) return f;
  return std::nullopt;
}

std::optional<ChatFormat> detect_chat_format(std::string_view t) {
  if (t.empty()) return ChatFormat::plain;
  // Order matters only for templates that mention several families (none of the common ones do).
  if (t.find("<|im_start|>") != std::string_view::npos) return ChatFormat::chatml;
  if (t.find("<|start_header_id|>") != std::string_view::npos) return ChatFormat::llama3;
  if (t.find("[INST]") != std::string_view::npos) return ChatFormat::llama2;
  if (t.find("<|user|>") != std::string_view::npos) return ChatFormat::zephyr;
  return std::nullopt;
}

namespace {

std::string capitalized(const std::string& role) {
  std::string r = role;
  if (!r.empty() && r[0] >= 'a' && r[0] <= 'z') r[0] = static_cast<char>(r[0] - 'a' + 'A');
  return r;
}

ChatPrompt render_llama2(const std::vector<ChatMessage>& messages) {
  // The system prompt goes inside the first [INST] block, as Llama-2's template does.
  ChatPrompt p;
  std::string system;
  bool first_inst = true;
  for (const auto& m : messages) {
    if (m.role == "system") {
      system += m.content;
    } else if (m.role == "user") {
      if (!first_inst) p.text += "<s>";
      p.text += "[INST] ";
      if (!system.empty()) {
        p.text += "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
        system.clear();
      }
      p.text += m.content + " [/INST]";
      first_inst = false;
    } else {  // assistant
      p.text += " " + m.content + " </s>";
    }
  }
  p.stops = {"</s>", "[INST]"};
  return p;
}

}  // namespace

ChatPrompt render_chat(ChatFormat format, const std::vector<ChatMessage>& messages) {
  ChatPrompt p;
  switch (format) {
    case ChatFormat::chatml:
      for (const auto& m : messages) p.text += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      p.text += "<|im_start|>assistant\n";
      p.stops = {"<|im_end|>", "<|im_start|>"};
      return p;
    case ChatFormat::llama3:
      for (const auto& m : messages)
        p.text += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      p.text += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      p.stops = {"<|eot_id|>", "<|start_header_id|>"};
      return p;
    case ChatFormat::llama2:
      return render_llama2(messages);
    case ChatFormat::zephyr:
      for (const auto& m : messages) p.text += "<|" + m.role + "|>\n" + m.content + "</s>\n";
      p.text += "<|assistant|>\n";
      p.stops = {"</s>", "<|user|>"};
      return p;
    case ChatFormat::plain:
      for (const auto& m : messages) p.text += capitalized(m.role) + ": " + m.content + "\n\n";
      p.text += "Assistant:";
      p.stops = {"\n\nUser:", "\n\nSystem:"};
      return p;
  }
  return p;
}

}  // namespace qeval::serve
