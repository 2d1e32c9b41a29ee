#include <gtest/gtest.h>

#include <cmath>

#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/quant/calibration.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
const char* kText = "data/tinystories/tinystories_eval.txt";

TEST(Calibration, SeededWindowsAreReproducibleAndInRange) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  const Model m = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(m);
  const std::string text = test::read_text(test::shared_path(kText));
  const auto a = make_calibration(*tok, text, {.samples = 8, .seqlen = 64, .seed = 7}, 512);
  const auto b = make_calibration(*tok, text, {.samples = 8, .seqlen = 64, .seed = 7}, 512);
  const auto c = make_calibration(*tok, text, {.samples = 8, .seqlen = 64, .seed = 8}, 512);
  ASSERT_EQ(a.samples.size(), 8u);
  EXPECT_EQ(a.samples, b.samples);
  EXPECT_NE(a.offsets, c.offsets);
  const auto ids = tok->encode(text);
  for (size_t i = 0; i < a.samples.size(); ++i) {
    ASSERT_EQ(a.samples[i].size(), 64u);
    ASSERT_LE(a.offsets[i] + 64, static_cast<int64_t>(ids.size()));
    EXPECT_TRUE(std::equal(a.samples[i].begin(), a.samples[i].end(), ids.begin() + a.offsets[i]));
  }
  // seqlen capped by the context
  EXPECT_EQ(make_calibration(*tok, text, {.samples = 1, .seqlen = 4096, .seed = 0}, 512).seqlen, 512);
  EXPECT_THROW(make_calibration(*tok, "tiny", {.samples = 1, .seqlen = 64, .seed = 0}, 512), Error);
}

TEST(Calibration, OverlapCheckFlagsSharedText) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  QEVAL_REQUIRE_SHARED("data/wikitext2/wiki.test.raw");
  const Model m = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(m);
  const std::string text = test::read_text(test::shared_path(kText));
  const std::string wiki = test::read_text(test::shared_path("data/wikitext2/wiki.test.raw"));
  const auto cal = make_calibration(*tok, text, {.samples = 4, .seqlen = 128, .seed = 1}, 512);
  const auto same = check_overlap(cal, *tok, text, /*warn=*/false);
  EXPECT_GT(same.calib_shingles, 100);
  EXPECT_GT(same.fraction, 0.9);  // windows are copied from the evaluation text
  const auto other = check_overlap(cal, *tok, wiki, false);
  EXPECT_LT(other.fraction, kOverlapWarnFraction);
  EXPECT_FALSE(other.warned);
  testing::internal::CaptureStderr();
  EXPECT_TRUE(check_overlap(cal, *tok, text, true).warned);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("overlaps the evaluation text"), std::string::npos);
}

TEST(Calibration, CollectorRecordsAbsmaxMeanAndHessian) {
  CalibrationCollector col(true, [](const LinearId& id) { return id.layer == 0; });
  std::vector<float> x = {1, -2, 3, -4, 0.5f, 6};  // 3 rows x 2 cols
  col.linear_input({0, LinearRole::AttnQ}, x.data(), 3, 2);
  col.linear_input({1, LinearRole::AttnQ}, x.data(), 3, 2);  // not selected
  ASSERT_EQ(col.stats().size(), 1u);
  const LinearStats* s = col.find({0, LinearRole::AttnQ});
  ASSERT_NE(s, nullptr);
  EXPECT_FLOAT_EQ(s->absmax[0], 3.0f);
  EXPECT_FLOAT_EQ(s->absmax[1], 6.0f);
  EXPECT_NEAR(s->mean_abs()[0], 4.5 / 3, 1e-6);
  EXPECT_NEAR(s->mean_abs()[1], 12.0 / 3, 1e-6);
  const auto h = s->hessian->hessian();
  EXPECT_NEAR(h[0], 2.0 / 3 * (1 + 9 + 0.25), 1e-9);
  EXPECT_NEAR(h[1], 2.0 / 3 * (-2 - 12 + 3), 1e-9);
}

TEST(Calibration, ForwardReachesEveryDecoderLinear) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  const Model m = load_model(test::shared_path(kModel).string());
  auto tok = load_tokenizer(m);
  Engine e(m, {.threads = 2});
  const auto cal = make_calibration(*tok, test::read_text(test::shared_path(kText)), {.samples = 3, .seqlen = 32, .seed = 0}, 512);
  CalibrationCollector col(false);
  run_calibration_forward(e, cal, col, 2);
  EXPECT_EQ(e.hooks(), nullptr);
  for (const LinearId& id : e.linear_ids()) {
    if (id.role == LinearRole::Output) continue;  // no logits requested
    const LinearStats* s = col.find(id);
    ASSERT_NE(s, nullptr) << id.name();
    EXPECT_EQ(s->tokens, 96) << id.name();
  }
}

}  // namespace
}  // namespace qeval::quant
