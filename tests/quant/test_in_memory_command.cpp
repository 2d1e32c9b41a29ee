// quantize_for_command: the --spec / --calib handling the commands share (quant/in_memory.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/quant/in_memory.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

constexpr const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
constexpr const char* kText = "data/tinystories/tinystories_eval.txt";

struct Loaded {
  Model model;
  std::unique_ptr<Tokenizer> tok;
};

Loaded load_stories() {
  Loaded l{load_model(test::shared_path(kModel).string()), nullptr};
  l.tok = load_tokenizer(l.model);
  return l;
}

TEST(QuantizeForCommand, EmptySpecDoesNothing) {
  QEVAL_REQUIRE_SHARED(kModel);
  const Loaded l = load_stories();
  Engine e(l.model, EngineOptions{.threads = 1});
  std::vector<std::string> lines;
  auto q = quantize_for_command(e, l.model, *l.tok, "", {}, "", "test", [&](const std::string& s) { lines.push_back(s); });
  EXPECT_EQ(q, nullptr);
  EXPECT_TRUE(lines.empty());
  EXPECT_EQ(e.hooks(), nullptr);
  EXPECT_FALSE(e.kv_format().quantized());
}

TEST(QuantizeForCommand, ReportsWeightsAndKvStorage) {
  QEVAL_REQUIRE_SHARED(kModel);
  const Loaded l = load_stories();
  {
    Engine e(l.model, EngineOptions{.threads = 1});
    std::vector<std::string> lines;
    auto q = quantize_for_command(e, l.model, *l.tok, "w8kv4", {}, "", "test", [&](const std::string& s) { lines.push_back(s); });
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->result.spec.str(), "w8kv4");
    EXPECT_TRUE(e.kv_format().quantized());
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0], in_memory_summary(*q));
    EXPECT_EQ(lines[0].rfind("quantized in memory: w8kv4, 35 linears, ", 0), 0u) << lines[0];
    EXPECT_NE(lines[0].find(", KV cache kv4 (stored: q4 asym per token+head)"), std::string::npos) << lines[0];
  }
  {
    Engine e(l.model, EngineOptions{.threads = 1});
    auto q = quantize_for_command(e, l.model, *l.tok, "kv3", {}, "", "test");
    EXPECT_FALSE(e.kv_format().quantized());
    EXPECT_EQ(in_memory_summary(*q), "quantized in memory: kv3, no linear weights quantized, KV cache kv3 (simulated: float cache)");
  }
  {
    Engine e(l.model, EngineOptions{.threads = 1});
    auto q = quantize_for_command(e, l.model, *l.tok, "w8", {}, "", "test");
    EXPECT_EQ(in_memory_summary(*q).find("KV cache"), std::string::npos);  // no KV part: not mentioned
  }
}

TEST(QuantizeForCommand, ErrorsNameTheCommand) {
  QEVAL_REQUIRE_SHARED(kModel);
  const Loaded l = load_stories();
  Engine e(l.model, EngineOptions{.threads = 1});
  try {
    quantize_for_command(e, l.model, *l.tok, "llmint8", {}, "", "perplexity");
    FAIL() << "llmint8 without calibration must be refused";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("perplexity: spec 'llmint8' needs calibration text (--calib FILE)"), std::string::npos)
        << err.what();
  }
  EXPECT_THROW(quantize_for_command(e, l.model, *l.tok, "w9", {}, "", "test"), Error);
}

TEST(QuantizeForCommand, LoadsCalibrationFromTheRequest) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  const Loaded l = load_stories();
  Engine e(l.model, EngineOptions{.threads = 1});
  const CalibrationRequest calib{test::shared_path(kText).string(), {.samples = 2, .seqlen = 32, .seed = 0}};
  auto q = quantize_for_command(e, l.model, *l.tok, "llmint8", calib, "", "test");
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q->llmint8, nullptr);
  EXPECT_EQ(q->result.linears.size(), 35u);
}

}  // namespace
}  // namespace qeval::quant
