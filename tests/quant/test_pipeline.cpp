#include <gtest/gtest.h>

#include <cmath>

#include "qeval/engine/engine.h"
#include "qeval/engine/perplexity.h"
#include "qeval/io/model.h"
#include "qeval/quant/awq.h"
#include "qeval/quant/calibration.h"
#include "qeval/quant/gptq.h"
#include "qeval/quant/pipeline.h"
#include "qeval/quant/rtn.h"
#include "qeval/tokenizer/tokenizer.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
const char* kText = "data/tinystories/tinystories_eval.txt";

struct Fixture {
  Model model;
  std::unique_ptr<Tokenizer> tok;
  std::string text;
  Calibration calib;
  std::vector<TokenId> probe;
};

Fixture load_fixture(int64_t samples = 16, int64_t seqlen = 256) {
  Fixture f;
  f.model = load_model(test::shared_path(kModel).string());
  f.tok = load_tokenizer(f.model);
  f.text = test::read_text(test::shared_path(kText));
  f.calib = make_calibration(*f.tok, f.text, {.samples = samples, .seqlen = seqlen, .seed = 1234}, 512);
  // Probe text from the end of the file (calibration draws from all of it; the test only needs
  // a fixed input).
  f.probe = f.tok->encode(f.text.substr(f.text.size() - 2000));
  f.probe.resize(200);
  return f;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

void expect_transform_preserves_logits(const std::string& spec) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  Fixture f = load_fixture(8, 128);
  Engine ref(f.model, {.threads = 2});
  Engine e(f.model, {.threads = 2});
  const auto base = ref.logits(f.probe);
  PipelineOptions o;
  o.quantize_weights = false;
  const auto r = quantize_model(e, QuantSpec::parse(spec), f.calib, o);
  EXPECT_TRUE(r.linears.empty());
  const auto after = e.logits(f.probe);
  ASSERT_EQ(base.size(), after.size());
  // float32 rounding of W*s and norm/s: measured ~2.3e-5 on logits of magnitude ~10.
  EXPECT_LE(max_abs_diff(base, after), 5e-5) << spec;
  // The transform must actually have changed weights and norms (otherwise the test is vacuous).
  const auto w0 = ref.linear({0, LinearRole::AttnQ}).weights->to_f32();
  const auto w1 = e.linear({0, LinearRole::AttnQ}).weights->to_f32();
  EXPECT_GT(max_abs_diff(w0, w1), 1e-4) << spec;
  EXPECT_NE(ref.norm_weight(0, NormSite::Attn), e.norm_weight(0, NormSite::Attn));
}

TEST(Pipeline, SmoothQuantTransformPreservesLogits) { expect_transform_preserves_logits("w8a8-smoothquant"); }
TEST(Pipeline, AwqTransformPreservesLogits) { expect_transform_preserves_logits("w4g32-awq"); }

TEST(Pipeline, GptqHasLowerLayerOutputErrorThanRtn) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  Fixture f = load_fixture(16, 256);
  Engine e(f.model, {.threads = 2});
  CalibrationCollector col(true);
  run_calibration_forward(e, f.calib, col);
  const QuantizerConfig cfg = *QuantSpec::parse("w4g32").weights;
  int better = 0, total = 0;
  for (const LinearId& id : e.linear_ids()) {
    if (id.role == LinearRole::Output) continue;
    const auto w = e.linear(id).weights->to_f32();
    const int64_t rows = e.linear(id).out_features(), cols = e.linear(id).in_features();
    const auto h = col.find(id)->hessian->hessian();
    const double rtn = output_error(w, rtn_quantize(cfg, w, rows, cols).dequantize(), rows, cols, h);
    const double gq = output_error(w, gptq_quantize(cfg, w, rows, cols, h).weights, rows, cols, h);
    EXPECT_LT(gq, rtn) << id.name();
    better += gq < rtn;
    ++total;
  }
  EXPECT_EQ(better, total);
}

TEST(Pipeline, AwqClipSearchNeverIncreasesCalibrationError) {
  // Synthetic: heavy-tailed weights, correlated inputs.
  const int64_t rows = 8, cols = 64;
  std::vector<float> w(rows * cols);
  uint64_t s = 5;
  auto rnd = [&] {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) / 9007199254740992.0 - 0.5;
  };
  for (auto& v : w) v = static_cast<float>(std::pow(rnd(), 3) * 8);
  std::vector<double> g(cols * cols, 0.0);
  for (int t = 0; t < 256; ++t) {
    std::vector<double> x(cols);
    for (auto& v : x) v = rnd();
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j) g[i * cols + j] += x[i] * x[j];
  }
  const QuantizerConfig cfg = *QuantSpec::parse("w3g16").weights;
  auto w2 = w;
  const auto r = awq_clip_search(cfg, w2, rows, cols, g);
  EXPECT_LE(r.loss_after, r.loss_before);
  EXPECT_LT(r.loss_after, r.loss_before * 0.999);  // heavy tails: clipping must help here
  std::vector<float> x_mean(cols, 1.0f);
  x_mean[3] = 20.0f;
  const auto a = awq_search_scales(cfg, {w}, cols, x_mean, g);
  EXPECT_LE(a.loss, a.loss_rtn);
}

double ppl_of(Fixture& f, const std::string& spec, std::vector<std::string>* notes = nullptr) {
  Engine e(f.model, {.threads = 2});
  if (spec != "fp32") {
    const auto r = quantize_model(e, QuantSpec::parse(spec), f.calib);
    if (notes) *notes = r.notes;
  }
  PerplexityOptions o;
  o.method = PerplexityMethod::GPTQ;
  o.n_ctx = 256;
  o.max_chunks = 24;
  return perplexity(e, *f.tok, f.text, o).ppl;
}

TEST(Pipeline, W4g32GptqAndAwqNotWorseThanRtnOnStories) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  Fixture f = load_fixture(32, 256);
  const double fp = ppl_of(f, "fp32");
  const double rtn = ppl_of(f, "w4g32");
  const double gq = ppl_of(f, "w4g32-gptq");
  const double aw = ppl_of(f, "w4g32-awq");
  const double awg = ppl_of(f, "w4g32-awq-gptq");
  std::printf("stories260K PPL (gptq method, ctx 256, 24 windows): fp32 %.4f  w4g32 rtn %.4f  gptq %.4f  awq %.4f  awq+gptq %.4f\n",
              fp, rtn, gq, aw, awg);
  EXPECT_GT(rtn, fp);
  EXPECT_LE(gq, rtn);
  EXPECT_LE(aw, rtn);
}

TEST(Pipeline, ReportsBitsAndQuantizesOnlyDecoderLinearsByDefault) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  Fixture f = load_fixture(4, 64);
  Engine e(f.model, {.threads = 2});
  const auto out_before = e.linear(LinearId::output()).weights->to_f32();
  const auto r = quantize_model(e, QuantSpec::parse("w4g32-asym"), f.calib);
  EXPECT_EQ(r.linears.size(), static_cast<size_t>(e.config().n_layers * 7));
  for (const auto& q : r.linears) EXPECT_NE(q.id.role, LinearRole::Output);
  EXPECT_EQ(e.linear(LinearId::output()).weights->to_f32(), out_before);
  // 4 bits + (16-bit scale + 4-bit zero) per 32 -> 4.625 where rows divide; ffn_down (172) has a short group.
  EXPECT_GT(r.bits_per_weight, 4.6);
  EXPECT_LT(r.bits_per_weight, 4.7);
  PipelineOptions o;
  o.include_output = true;
  Engine e2(f.model, {.threads = 2});
  const auto r2 = quantize_model(e2, QuantSpec::parse("w4g32-gptq"), f.calib, o);
  EXPECT_EQ(r2.linears.back().id.role, LinearRole::Output);
  EXPECT_NE(e2.linear(LinearId::output()).weights->to_f32(), out_before);
}

}  // namespace
}  // namespace qeval::quant
