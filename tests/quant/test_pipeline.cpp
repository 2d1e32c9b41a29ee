#include <gtest/gtest.h>

#include <cmath>

#include "qeval/engine/engine.h"
#include "qeval/engine/perplexity.h"
#include "qeval/io/model.h"
#include "qeval/quant/awq.h"
#include "qeval/quant/calibration.h"
#include "qeval/quant/gptq.h"
#include "qeval/quant/in_memory.h"
#include "qeval/quant/llmint8.h"
#include "qeval/quant/spqr.h"
#include "qeval/util/error.h"
#include "qeval/quant/pipeline.h"
#include "qeval/quant/rtn.h"
#include "qeval/tokenizer/tokenizer.h"
#include "test_support.h"

namespace qeval::quant {
namespace {

const char* kModel = "models/stories260K-gguf/stories260K-F32.gguf";
const char* kModel2 = "models/aidreams260K-gguf/aidreams260K-F32.gguf";
const char* kText = "data/tinystories/tinystories_eval.txt";

struct Fixture {
  Model model;
  std::unique_ptr<Tokenizer> tok;
  std::string text;
  Calibration calib;
  std::vector<TokenId> probe;
};

Fixture load_fixture(int64_t samples = 16, int64_t seqlen = 256, const char* model = kModel) {
  Fixture f;
  f.model = load_model(test::shared_path(model).string());
  f.tok = load_tokenizer(f.model);
  f.text = test::read_text(test::shared_path(kText));
  f.calib = make_calibration(*f.tok, f.text, {.samples = samples, .seqlen = seqlen, .seed = 1234}, f.model.config.context_length);
  // Probe text from the end of the file (calibration draws from all of it; the test only needs
  // a fixed input).
  f.probe = f.tok->encode(f.text.substr(f.text.size() - 2000));
  f.probe.resize(std::min<size_t>(f.probe.size(), static_cast<size_t>(std::min<int64_t>(200, f.model.config.context_length))));
  return f;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

// max |logit difference| between the float model and the model after the spec's transforms only.
double transform_logit_change(Fixture& f, const std::string& spec, bool exact_folding, Engine* keep = nullptr) {
  Engine ref(f.model, {.threads = 2});
  Engine local(f.model, {.threads = 2});
  Engine& e = keep ? *keep : local;
  const auto base = ref.logits(f.probe);
  PipelineOptions o;
  o.quantize_weights = false;
  o.exact_folding = exact_folding;
  const auto r = quantize_model(e, QuantSpec::parse(spec), f.calib, o);
  EXPECT_TRUE(r.linears.empty());
  for (const auto& n : r.notes) std::printf("  %s%s\n", exact_folding ? "" : "(float scales) ", n.c_str());
  const auto after = e.logits(f.probe);
  EXPECT_EQ(base.size(), after.size());
  return max_abs_diff(base, after);
}

void expect_transform_preserves_logits(const char* model, const std::string& spec) {
  QEVAL_REQUIRE_SHARED(model);
  QEVAL_REQUIRE_SHARED(kText);
  Fixture f = load_fixture(8, 128, model);
  Engine e(f.model, {.threads = 2});
  // The bound. Power-of-two scales make every fold exact in float (smoothquant.h), so the
  // difference is 0; folding the unrounded scales leaves float32 rounding of W*s and g/s
  // (measured 2e-5 .. 4e-5 on these models, printed below).
  const double exact = transform_logit_change(f, spec, true, &e);
  const double rounded = transform_logit_change(f, spec, false);
  std::printf("[ fold ] %s %s: max|dlogit| %.3g with power-of-two scales, %.3g with float scales\n", model, spec.c_str(),
              exact, rounded);
  EXPECT_LE(exact, 1e-5) << spec;
  // The transform must actually have changed weights and norms (otherwise the test is vacuous).
  Engine ref(f.model, {.threads = 2});
  double changed = 0;
  int norms_changed = 0;
  for (const LinearId& id : ref.linear_ids())
    changed = std::max(changed, max_abs_diff(ref.linear(id).weights->to_f32(), e.linear(id).weights->to_f32()));
  for (int l = 0; l < static_cast<int>(ref.config().n_layers); ++l)
    for (NormSite site : {NormSite::Attn, NormSite::Ffn}) norms_changed += ref.norm_weight(l, site) != e.norm_weight(l, site);
  EXPECT_GT(changed, 1e-4) << spec;
  // SmoothQuant always folds into the norms; AWQ only where its search picks alpha > 0 for q/k/v
  // or gate/up (with power-of-two scales on these models it keeps alpha > 0 only for down <- up).
  if (spec.find("smoothquant") != std::string::npos) {
    EXPECT_GT(norms_changed, 0) << spec;
  }
}

TEST(Pipeline, SmoothQuantTransformPreservesLogits) {
  expect_transform_preserves_logits(kModel, "w8a8-smoothquant");
  expect_transform_preserves_logits(kModel2, "w8a8-smoothquant");
}
TEST(Pipeline, AwqTransformPreservesLogits) {
  expect_transform_preserves_logits(kModel, "w4g32-awq");
  expect_transform_preserves_logits(kModel2, "w4g16-awq");
}

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

double ppl_of(Fixture& f, const std::string& spec, std::vector<std::string>* notes = nullptr, const PipelineOptions& po = {}) {
  Engine e(f.model, {.threads = 2});
  if (spec != "fp32") {
    const auto r = quantize_model(e, QuantSpec::parse(spec), f.calib, po);
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
  PipelineOptions float_scales;
  float_scales.exact_folding = false;
  const double aw_float = ppl_of(f, "w4g32-awq", nullptr, float_scales);
  const double w3 = ppl_of(f, "w3g32"), w3_awq = ppl_of(f, "w3g32-awq"), w3_awq_float = ppl_of(f, "w3g32-awq", nullptr, float_scales);
  const double sq = ppl_of(f, "w8a8-smoothquant"), sq_float = ppl_of(f, "w8a8-smoothquant", nullptr, float_scales);
  std::printf("awq float scales %.4f; w3g32 rtn %.4f awq %.4f awq-float %.4f; w8a8-smoothquant (weights only here) %.4f float %.4f\n",
              aw_float, w3, w3_awq, w3_awq_float, sq, sq_float);
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

// The stored representation (codes, scales, zeros, CSR outliers) is exactly what the engine runs.
void expect_stored_matches_engine(const QuantizedModelResult& r, const Engine& e) {
  for (const auto& q : r.linears) {
    SCOPED_TRACE(q.id.name());
    EXPECT_EQ(q.q.dequantize(), e.linear(q.id).weights->to_f32());
    EXPECT_EQ(static_cast<int64_t>(q.q.codes.size()), q.q.rows * q.q.cols);
  }
}

TEST(Pipeline, LlmInt8KeepsOutlierFeaturesExactAndQuantizesActivations) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  Fixture f = load_fixture(8, 128);
  Engine ref(f.model, {.threads = 2});
  Engine w4(f.model, {.threads = 2});
  quantize_model(w4, QuantSpec::parse("w4g32"), f.calib);
  const double d_w4 = max_abs_diff(ref.logits(f.probe), w4.logits(f.probe));
  // A threshold of 2 makes outlier features certain on this small model (at 6 there are few).
  for (const char* spec : {"llmint8", "llmint8-t2"}) {
    SCOPED_TRACE(spec);
    Engine e(f.model, {.threads = 2});
    const auto qs = QuantSpec::parse(spec);
    const auto in_mem = quantize_in_memory(e, qs, f.calib, "test");
    const QuantizedModelResult& r = in_mem->result;
    ASSERT_EQ(r.linears.size(), static_cast<size_t>(e.config().n_layers * 7));
    expect_stored_matches_engine(r, e);
    int64_t outlier_cols = 0;
    double expect_bits = 0;
    for (const auto& q : r.linears) {
      const int64_t k = static_cast<int64_t>(q.outlier_inputs.size());
      outlier_cols += k;
      EXPECT_EQ(q.q.config.bits, 8);
      EXPECT_TRUE(q.q.config.symmetric);
      EXPECT_EQ(q.q.has_outliers(), k > 0);
      if (k > 0) {
        ASSERT_EQ(q.q.outlier_row_ptr.size(), static_cast<size_t>(q.q.rows + 1));
        EXPECT_EQ(q.q.outlier_values.size(), static_cast<size_t>(q.q.rows * k));
        const auto w = ref.linear(q.id).weights->to_f32();
        for (int64_t row = 0; row < q.q.rows; ++row)
          for (int64_t j = 0; j < k; ++j) {
            const auto at = static_cast<size_t>(q.q.outlier_row_ptr[static_cast<size_t>(row)] + j);
            EXPECT_EQ(q.q.outlier_cols[at], q.outlier_inputs[static_cast<size_t>(j)]);
            EXPECT_EQ(q.q.outlier_values[at], w[static_cast<size_t>(row * q.q.cols + q.outlier_inputs[static_cast<size_t>(j)])]);
          }
      }
      const double n = static_cast<double>(q.q.rows * q.q.cols);
      EXPECT_NEAR(q.bits_per_weight,
                  (static_cast<double>(q.q.rows * (q.q.cols - k)) * 8 + q.q.rows * 16.0 + q.q.rows * k * 16.0 + k * 32.0) / n, 1e-9);
      expect_bits += q.bits_per_weight * n;
    }
    EXPECT_NEAR(r.bits_per_weight, expect_bits / static_cast<double>(r.quantized_params), 1e-9);
    if (std::string(spec) == "llmint8-t2") {
      EXPECT_GT(outlier_cols, 0);
    }
    // The activation side: LLM.int8() hooks, covering exactly the quantized linears.
    ASSERT_TRUE(in_mem->llmint8);
    EXPECT_FALSE(in_mem->activations);
    EXPECT_EQ(in_mem->llmint8->outliers().size(), r.linears.size());
    EXPECT_EQ(e.hooks(), &in_mem->hooks);
    const auto base = ref.logits(f.probe), got = e.logits(f.probe);
    const double d = max_abs_diff(base, got);
    std::printf("[ llmint8 ] %s: %lld outlier feature columns, %.4f bits per weight, max|dlogit| %.4g (w4g32: %.4g)\n", spec,
                static_cast<long long>(outlier_cols), r.bits_per_weight, d, d_w4);
    EXPECT_GT(d, 0.0);
    EXPECT_LT(d, 0.5 * d_w4);  // 8-bit weights and activations: far closer than 4-bit weights alone
  }
  Engine e(f.model, {.threads = 2});
  EXPECT_THROW(quantize_in_memory(e, QuantSpec::parse("llmint8"), {}, "test"), Error);  // needs calibration
}

TEST(Pipeline, SpqrStoresCodesSecondLevelStatsAndOutliers) {
  QEVAL_REQUIRE_SHARED(kModel);
  QEVAL_REQUIRE_SHARED(kText);
  Fixture f = load_fixture(8, 128);
  Engine e(f.model, {.threads = 2});
  const auto spec = QuantSpec::parse("spqr-w3");
  const auto r = quantize_model(e, spec, f.calib);
  ASSERT_EQ(r.linears.size(), static_cast<size_t>(e.config().n_layers * 7));
  expect_stored_matches_engine(r, e);
  const SpqrOptions so = spqr_options(spec);
  double bits = 0, err = 0, err_rtn = 0;
  int64_t outliers = 0;
  for (const auto& q : r.linears) {
    EXPECT_EQ(q.q.config.bits, 3);
    EXPECT_EQ(q.q.config.group_size, 16);
    EXPECT_FALSE(q.q.config.symmetric);
    ASSERT_TRUE(q.q.has_outliers());
    const int64_t n_out = static_cast<int64_t>(q.q.outlier_values.size());
    outliers += n_out;
    EXPECT_NEAR(q.bits_per_weight, spqr_effective_bits(so, q.q.rows, q.q.cols, n_out), 1e-12);
    EXPECT_GE(q.error, 0.0);
    err += q.error;
    err_rtn += q.error_before;
    bits += q.bits_per_weight * static_cast<double>(q.q.rows * q.q.cols);
  }
  EXPECT_NEAR(r.bits_per_weight, bits / static_cast<double>(r.quantized_params), 1e-9);
  EXPECT_NEAR(static_cast<double>(outliers) / static_cast<double>(r.quantized_params), so.outlier_fraction, 2e-3);
  std::printf("[ spqr ] spqr-w3: %.4f bits per weight, %lld outliers, layer output error %.4g (3-bit RTN g16: %.4g)\n",
              r.bits_per_weight, static_cast<long long>(outliers), err, err_rtn);
  EXPECT_LT(err, err_rtn);  // 1% outliers by sensitivity outweigh the 3-bit statistics
}

TEST(Pipeline, SpecsThatNeedCalibrationSayHow) {
  QEVAL_REQUIRE_SHARED(kModel);
  const Model m = load_model(test::shared_path(kModel).string());
  for (const char* spec : {"w4g32-gptq", "w4g32-awq", "w8a8-smoothquant", "llmint8"}) {
    Engine e(m, {.threads = 1});
    EXPECT_TRUE(needs_calibration(QuantSpec::parse(spec))) << spec;
    try {
      quantize_in_memory(e, QuantSpec::parse(spec), {}, "perplexity");
      ADD_FAILURE() << spec << " quantized without calibration";
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find("perplexity: spec '"), std::string::npos) << err.what();
      EXPECT_NE(std::string(err.what()).find("--calib FILE"), std::string::npos) << err.what();
    }
  }
  for (const char* spec : {"w4g32", "spqr-w3", "kv4", "a8"}) EXPECT_FALSE(needs_calibration(QuantSpec::parse(spec))) << spec;
}

}  // namespace
}  // namespace qeval::quant
