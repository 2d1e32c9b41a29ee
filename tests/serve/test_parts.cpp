// Unit tests of the server's parts that need no HTTP: chat formats, request validation, token
// offsets.
#include <gtest/gtest.h>

#include "qeval/io/model.h"
#include "qeval/serve/api_error.h"
#include "qeval/serve/chat_template.h"
#include "qeval/serve/request.h"
#include "qeval/serve/text_offsets.h"
#include "qeval/tokenizer/tokenizer.h"
#include "test_support.h"

namespace qeval::serve {
namespace {

using nlohmann::json;

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};

TEST(ChatTemplate, DetectsTheCommonFamilies) {
  EXPECT_EQ(detect_chat_format("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"), ChatFormat::chatml);
  EXPECT_EQ(detect_chat_format("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"), ChatFormat::llama3);
  EXPECT_EQ(detect_chat_format("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"), ChatFormat::llama2);
  EXPECT_EQ(detect_chat_format("{{ '<|user|>\n' + message['content'] + eos_token }}"), ChatFormat::zephyr);
  EXPECT_EQ(detect_chat_format(""), ChatFormat::plain);
  EXPECT_EQ(detect_chat_format("{{ message['content'] }}"), std::nullopt);
  EXPECT_EQ(chat_format_from_name("llama3"), ChatFormat::llama3);
  EXPECT_EQ(chat_format_from_name("jinja"), std::nullopt);
}

TEST(ChatTemplate, RendersEachFamily) {
  EXPECT_EQ(render_chat(ChatFormat::chatml, kConversation).text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(ChatFormat::llama3, kConversation).text,
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(ChatFormat::llama2, kConversation).text,
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]");
  EXPECT_EQ(render_chat(ChatFormat::zephyr, kConversation).text,
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nBye</s>\n<|assistant|>\n");
  const ChatPrompt plain = render_chat(ChatFormat::plain, kConversation);
  EXPECT_EQ(plain.text, "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Bye\n\nAssistant:");
  EXPECT_EQ(plain.stops, (std::vector<std::string>{"\n\nUser:", "\n\nSystem:"}));
  EXPECT_EQ(render_chat(ChatFormat::chatml, kConversation).stops[0], "<|im_end|>");
}

int error_status(const std::string& body) {
  try {
    parse_completion_request(parse_json_body(body));
  } catch (const ApiError& e) {
    return e.status();
  }
  return 200;
}

TEST(Request, ParsesCompletions) {
  const CompletionRequest r = parse_completion_request(json::parse(
      R"({"model":"m","prompt":["a","b"],"max_tokens":3,"temperature":0,"stop":"x","logprobs":2,"echo":true,"seed":5,
          "stream":true,"stream_options":{"include_usage":true},"presence_penalty":0,"user":"ignored"})"));
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].text, "b");
  EXPECT_EQ(r.sampling.max_tokens, 3);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.stop, std::vector<std::string>{"x"});
  EXPECT_TRUE(r.sampling.seed_given);
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_TRUE(r.echo && r.stream && r.include_usage);
  const CompletionRequest ids = parse_completion_request(json::parse(R"({"prompt":[[1,2],[3]],"max_tokens":2.0})"));
  ASSERT_EQ(ids.prompts.size(), 2u);
  EXPECT_TRUE(ids.prompts[0].is_ids);
  EXPECT_EQ(ids.prompts[0].ids, (std::vector<TokenId>{1, 2}));
  EXPECT_EQ(ids.sampling.max_tokens, 2);
  EXPECT_EQ(parse_completion_request(json::parse(R"({"prompt":"x"})")).sampling.max_tokens, 16);  // OpenAI's default
}

TEST(Request, RejectsBadParameters) {
  EXPECT_EQ(error_status("{"), 400);
  EXPECT_EQ(error_status(R"({"prompt":"x","max_tokens":2.5})"), 400);
  EXPECT_EQ(error_status(R"({"prompt":"x","top_p":0})"), 400);
  EXPECT_EQ(error_status(R"({"prompt":"x","n":2})"), 400);
  EXPECT_EQ(error_status(R"({"prompt":"x","logit_bias":{"1":5}})"), 400);
  EXPECT_EQ(error_status(R"({"prompt":"x","stop":[""]})"), 400);
  EXPECT_EQ(error_status(R"({"prompt":[]})"), 400);
  EXPECT_EQ(error_status(R"({"prompt":[1,-2]})"), 400);
  EXPECT_EQ(error_status(R"({"prompt":"x","suffix":"y"})"), 400);
  EXPECT_EQ(error_status(R"({"prompt":"x","max_tokens":null,"stop":null})"), 200);  // null: the default
  try {
    parse_chat_request(json::parse(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true})"));
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "logprobs");
  }
  const ChatRequest c = parse_chat_request(
      json::parse(R"({"messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})"));
  EXPECT_EQ(c.messages[0].role, "system");
  EXPECT_EQ(c.messages[0].content, "ab");
  EXPECT_EQ(c.sampling.max_tokens, -1);
  const json body = error_body(ApiError(400, "bad", "invalid_request_error", "p"));
  EXPECT_EQ(body["error"]["param"], "p");
  EXPECT_TRUE(body["error"]["code"].is_null());
}

TEST(TextOffsets, CountsCodePoints) {
  EXPECT_EQ(code_points("h\xc3\xa9llo"), 5u);
  EXPECT_EQ(code_points("h\xc3\xa9llo", 2), 2u);  // inside 'é': the next character's index
  EXPECT_EQ(code_points("h\xc3\xa9llo", 3), 2u);
}

TEST(TextOffsets, AlignsSentencePieceTokens) {
  const char* path = "models/stories260K-gguf/stories260K-F32.gguf";
  QEVAL_REQUIRE_SHARED(path);
  const Model model = load_model(test::shared_path(path).string());
  auto tok = load_tokenizer(model);
  const std::string text = "Once upon a time, Lily ate \xc3\xa9" "clairs.";
  const std::vector<TokenId> ids = tok->encode(text);
  ASSERT_EQ(ids[0], tok->bos_id());
  const AlignedText a = align_tokens(*tok, ids, text);
  EXPECT_EQ(a.text, text);
  ASSERT_EQ(a.byte_offsets.size(), ids.size());
  EXPECT_EQ(a.byte_offsets[0], 0u);  // BOS takes no width
  EXPECT_EQ(a.byte_offsets[1], 0u);  // "▁Once" without its dummy-prefix space
  for (size_t i = 1; i + 1 < ids.size(); ++i) EXPECT_LE(a.byte_offsets[i], a.byte_offsets[i + 1]);
  // Re-joining the pieces from their offsets spells the text.
  std::string joined;
  for (size_t i = 0; i < ids.size(); ++i) {
    const size_t end = i + 1 < ids.size() ? a.byte_offsets[i + 1] : text.size();
    joined += text.substr(a.byte_offsets[i], end - a.byte_offsets[i]);
  }
  EXPECT_EQ(joined, text);
}

}  // namespace
}  // namespace qeval::serve
