#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "qeval/quant/spec.h"
#include "qeval/util/error.h"

namespace qeval::quant {
namespace {

using ::testing::HasSubstr;

// Canonical strings: print(parse(s)) must give s back.
const std::vector<std::string> kCanonical = {
    // The examples.
    "fp32", "w8", "w4g128", "w4g128-gptq", "w3g128-awq", "w8a8-smoothquant", "w4a8", "w4a8kv4", "kv3g64",
    "w4g32-asym", "llmint8", "spqr-w3",
    // More.
    "fp16", "bf16", "w2", "w3", "w5", "w6", "w7", "w8t", "w4g172", "w2g16", "w4g1", "a8", "a4g128", "a8t", "a8-static",
    "kv8", "kv4t", "kv2g32-sym", "kv2g32", "w4a8kv4g64", "w8a8kv8t", "a8kv4", "w4kv4", "w8a8-smoothquant-static",
    "w8a8-smoothquant-alpha0.85", "w8a8-smoothquant-alpha0", "w4g128-awq-gptq", "w8a8-smoothquant-gptq",
    "w8a8-awq-smoothquant", "w8a8-smoothquant-awq-gptq", "w4g128-gptq-actorder", "w4g128-gptq-damp0.1",
    "w4g128-gptq-damp0", "w4g128-gptq-actorder-asym", "w4-gptq-actorder-damp0.05", "w4a8kv4-asym@w-asym@a",
    "w4a8kv4-asym@w", "w4a8kv4-sym@kv", "w4a8kv4-asym@w-asym@a-sym@kv", "kv4-sym", "w4a8-asym@a", "w4-clip0.9", "w4g128a8-clip0.85@w", "w4a8kv4-clip0.9@a-clip0.8@kv",
    "w4-floor", "w4-ceil", "w4-stochastic", "w4-stochastic-seed7", "w4a8-stochastic@a-seed3",
    "w4a8-floor@w-ceil@a", "w4-scale1.01", "w4-scale0.99", "w4-scale1.05", "w4-scale0.95", "w4-zero1.05",
    "w4-zero0.95", "w4-zero0", "w4a8-scale1.01@w", "w4g128-scale1.05-zero0.95", "kv4-clip0.95", "kv4-sym-clip0.95",
    "llmint8-t4", "llmint8-t3.5", "spqr-w3g32", "spqr-w4-actorder", "spqr-w3-damp0.1", "spqr-w3-clip0.9",
    "spqr-w2g8-stochastic-seed5-scale1.01",
    "w4g128-awq-gptq-actorder-damp0.05-asym-clip0.9-stochastic-seed1-scale1.05-zero0.95",
    "w4a8kv4g64-smoothquant-gptq-alpha0.7-actorder-asym@w-clip0.9@w-scale1.01@a"};

TEST(Spec, CanonicalStringsRoundTrip) {
  for (const auto& s : kCanonical) {
    SCOPED_TRACE(s);
    QuantSpec q;
    ASSERT_NO_THROW(q = QuantSpec::parse(s));
    EXPECT_EQ(q.str(), s);
    EXPECT_EQ(QuantSpec::parse(q.str()), q);
  }
}

TEST(Spec, NonCanonicalStringsPrintCanonically) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"w4-sym", "w4"},
      {"w4-rtn", "w4"},
      {"w4g128-awq-rtn", "w4g128-awq"},
      {"a8t-static", "a8-static"},
      {"w4-asym@w", "w4-asym"},
      {"w4a8-asym@w-asym@a", "w4a8-asym"},
      {"w4a8-sym@a-asym@w", "w4a8-asym@w"},
      {"w4-clip1", "w4"},
      {"w4-clip1.0", "w4"},
      {"w4-clip0.90", "w4-clip0.9"},
      {"w4-nearest", "w4"},
      {"w4-scale1", "w4"},
      {"w4-zero1.00", "w4"},
      {"w4-asym-gptq", "w4-gptq-asym"},
      {"w4g128-actorder-gptq", "w4g128-gptq-actorder"},
      {"w4g128-gptq-damp0.01", "w4g128-gptq"},
      {"w8a8-smoothquant-alpha0.5", "w8a8-smoothquant"},
      {"spqr-w3g16", "spqr-w3"},
      {"llmint8-t6", "llmint8"},
      {"llmint8-t6.0", "llmint8"},
      {"w4-stochastic-seed0", "w4-stochastic"},
      {"w4-zero0.95-scale1.05-clip0.9-asym", "w4-asym-clip0.9-scale1.05-zero0.95"},
      // The KV cache defaults to asymmetric; weights and activations to symmetric.
      {"kv4-asym", "kv4"},
      {"w4a8kv4-asym", "w4a8kv4-asym@w-asym@a"},
      {"w4a8kv4-asym@w-asym@kv", "w4a8kv4-asym@w"},
      {"w4kv4-sym", "w4kv4-sym@kv"},
      {"w4kv4-asym", "w4kv4-asym@w"},
      {"kv3g64-sym@kv", "kv3g64-sym"},
  };
  for (const auto& [in, out] : cases) {
    SCOPED_TRACE(in);
    EXPECT_EQ(canonical_spec(in), out);
    EXPECT_EQ(QuantSpec::parse(in), QuantSpec::parse(out));
  }
}

TEST(Spec, StructuredConfig) {
  {
    const auto q = QuantSpec::parse("fp32");
    EXPECT_EQ(q.family, Family::Fp32);
    EXPECT_FALSE(q.weights || q.activations || q.kv);
    EXPECT_EQ(QuantSpec{}.str(), "fp32");
  }
  {
    const auto q = QuantSpec::parse("w8");
    EXPECT_EQ(q.family, Family::Int);
    ASSERT_TRUE(q.weights);
    EXPECT_EQ(q.weights->bits, 8);
    EXPECT_EQ(q.weights->granularity, Granularity::PerChannel);
    EXPECT_EQ(q.weights->group_size, 0);
    EXPECT_TRUE(q.weights->symmetric);
    EXPECT_FALSE(q.activations);
    EXPECT_FALSE(q.kv);
    EXPECT_TRUE(q.methods.empty());
  }
  {
    const auto q = QuantSpec::parse("w4g128-gptq");
    ASSERT_TRUE(q.weights);
    EXPECT_EQ(q.weights->bits, 4);
    EXPECT_EQ(q.weights->granularity, Granularity::PerGroup);
    EXPECT_EQ(q.weights->group_size, 128);
    EXPECT_EQ(q.methods, std::vector<Method>{Method::Gptq});
    EXPECT_TRUE(q.uses_gptq());
    EXPECT_FALSE(q.act_order);
    EXPECT_DOUBLE_EQ(q.damp, 0.01);
  }
  {
    const auto q = QuantSpec::parse("w4a8kv4g64");
    ASSERT_TRUE(q.weights && q.activations && q.kv);
    EXPECT_EQ(q.activations->bits, 8);
    EXPECT_EQ(q.activations->granularity, Granularity::PerToken);
    EXPECT_EQ(q.kv->bits, 4);
    EXPECT_EQ(q.kv->granularity, Granularity::PerGroup);
    EXPECT_EQ(q.kv->group_size, 64);
    EXPECT_TRUE(q.quantizes(Target::KV));
  }
  {
    const auto q = QuantSpec::parse("kv3g64");
    EXPECT_FALSE(q.weights);
    EXPECT_FALSE(q.activations);
    ASSERT_TRUE(q.kv);
    EXPECT_EQ(q.kv->bits, 3);
    EXPECT_FALSE(q.kv->symmetric);  // the default: group-wise asymmetric
  }
  {
    const auto q = QuantSpec::parse("w4a8kv4");
    EXPECT_TRUE(q.weights->symmetric);
    EXPECT_TRUE(q.activations->symmetric);
    EXPECT_FALSE(q.kv->symmetric);
    EXPECT_EQ(q.kv->granularity, Granularity::PerToken);  // one group per (token, head): kv_quant.h
    EXPECT_TRUE(QuantSpec::parse("kv4-sym").kv->symmetric);
    EXPECT_TRUE(QuantSpec::parse("w4kv4-sym@kv").kv->symmetric);
  }
  {
    const auto q = QuantSpec::parse("w8a8-smoothquant-static");
    ASSERT_TRUE(q.activations);
    EXPECT_EQ(q.activations->granularity, Granularity::PerTensor);
    EXPECT_TRUE(q.static_activations);
    EXPECT_EQ(q.methods, std::vector<Method>{Method::SmoothQuant});
  }
  {
    const auto q = QuantSpec::parse("w4g128-awq-gptq");
    EXPECT_EQ(q.methods, (std::vector<Method>{Method::Awq, Method::Gptq}));
    const auto r = QuantSpec::parse("w8a8-awq-smoothquant");
    EXPECT_EQ(r.methods, (std::vector<Method>{Method::Awq, Method::SmoothQuant}));
  }
  {
    const auto q = QuantSpec::parse("w4g32-asym");
    EXPECT_FALSE(q.weights->symmetric);
  }
  {
    const auto q = QuantSpec::parse("w4a8kv4-asym@w-asym@kv");
    EXPECT_FALSE(q.weights->symmetric);
    EXPECT_TRUE(q.activations->symmetric);
    EXPECT_FALSE(q.kv->symmetric);
  }
  {
    const auto q = QuantSpec::parse("w4-clip0.9-floor-scale1.05-zero0.95");
    EXPECT_DOUBLE_EQ(q.weights->clip_ratio, 0.9);
    EXPECT_EQ(q.weights->rounding, Rounding::Floor);
    EXPECT_DOUBLE_EQ(q.weights->scale_factor, 1.05);
    EXPECT_DOUBLE_EQ(q.weights->zero_factor, 0.95);
  }
  {
    const auto q = QuantSpec::parse("w4a8-stochastic@a-seed3");
    EXPECT_EQ(q.weights->rounding, Rounding::Nearest);
    EXPECT_EQ(q.weights->seed, 0u);
    EXPECT_EQ(q.activations->rounding, Rounding::Stochastic);
    EXPECT_EQ(q.activations->seed, 3u);
  }
  {
    const auto q = QuantSpec::parse("llmint8-t4");
    EXPECT_EQ(q.family, Family::LlmInt8);
    EXPECT_DOUBLE_EQ(q.outlier_threshold, 4.0);
    ASSERT_TRUE(q.weights && q.activations);
    EXPECT_EQ(q.weights->bits, 8);
    EXPECT_EQ(q.activations->granularity, Granularity::PerToken);
  }
  {
    const auto q = QuantSpec::parse("spqr-w3");
    EXPECT_EQ(q.family, Family::SpQR);
    ASSERT_TRUE(q.weights);
    EXPECT_EQ(q.weights->bits, 3);
    EXPECT_EQ(q.weights->granularity, Granularity::PerGroup);
    EXPECT_EQ(q.weights->group_size, 16);
    EXPECT_FALSE(q.weights->symmetric);
  }
  {
    // Every parsed quantizer is valid for the quantizer itself.
    for (const auto& s : kCanonical) {
      const auto q = QuantSpec::parse(s);
      for (Target t : {Target::Weights, Target::Activations, Target::KV})
        if (q.config(t)) {
          EXPECT_NO_THROW(q.config(t)->validate()) << s;
        }
    }
  }
}

// The error names the spec, and says what and where.
void expect_error(const std::string& spec, const std::string& what) {
  SCOPED_TRACE("spec: " + spec);
  try {
    (void)QuantSpec::parse(spec);
    ADD_FAILURE() << "no error; expected: " << what;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("spec '" + spec + "': ", 0), 0u) << msg;
    EXPECT_THAT(msg, HasSubstr(what));
  }
}

TEST(Spec, InvalidSpecsSayWhichPartIsWrong) {
  expect_error("", "empty spec");
  expect_error("w9g128", "bits 9 out of range 2-8 in part 'w9g128'");
  expect_error("w1", "bits 1 out of range 2-8 in part 'w1'");
  expect_error("w12", "bits 12 out of range 2-8");
  expect_error("w4a16", "bits 16 out of range 2-8 in part 'w4a16'");
  expect_error("kv9", "bits 9 out of range 2-8 in part 'kv9'");
  expect_error("w1234567890", "too large");
  expect_error("w04", "leading zero in part 'w04'");
  expect_error("w4g0", "group size must be positive in part 'w4g0'");
  expect_error("w4g", "missing group size after 'g' in part 'w4g'");
  expect_error("w4g0128", "leading zero");
  expect_error("w4x", "unexpected 'x'");
  expect_error("w4gx", "missing group size");
  expect_error("a8w4", "targets must appear in the order w, a, kv in part 'a8w4'");
  expect_error("w4w8", "duplicated target 'w' in part 'w4w8'");
  expect_error("w4-a8", "second bits part 'a8'");
  expect_error("W4", "unknown part 'W4'");
  expect_error("w4-gptx", "unknown part 'gptx'");
  expect_error("w4-GPTQ", "unknown part 'GPTQ'");
  expect_error("w", "unknown part 'w'");
  expect_error("gptq", "must come first, before 'gptq'");
  expect_error("gptq-w4", "must come first, before 'gptq'");
  expect_error("w4--gptq", "empty part");
  expect_error("w4-", "empty part");
  expect_error("-w4", "empty part");
  expect_error("w4-gptq-gptq", "duplicated part 'gptq'");
  expect_error("w4-asym-asym", "duplicated part 'asym'");
  expect_error("w4-gptq-rtn", "conflicting parts 'gptq' and 'rtn'");
  expect_error("w4-asym-sym", "conflicting parts 'asym' and 'sym'");
  expect_error("w4a8-asym-asym@w", "conflicting parts 'asym' and 'asym@w'");
  expect_error("w4-clip0.9-clip0.8", "conflicting parts 'clip0.9' and 'clip0.8'");
  expect_error("w4-floor-ceil", "conflicting parts 'floor' and 'ceil'");
  expect_error("w4-stochastic-seed1-seed2", "conflicting parts 'seed1' and 'seed2'");
  expect_error("w4g128-gptq-damp0.1-damp0.2", "conflicting parts 'damp0.1' and 'damp0.2'");
  expect_error("w4-gptq-awq", "'awq' must come before 'gptq'");
  expect_error("w8a8-rtn-smoothquant", "'smoothquant' must come before 'rtn'");
  expect_error("w8a8-awq-awq", "duplicated part 'awq'");
  expect_error("a8-gptq", "'gptq' needs quantized weights");
  expect_error("kv4-awq", "'awq' needs quantized weights");
  expect_error("w8-smoothquant", "'smoothquant' needs quantized weights and activations");
  expect_error("w4-actorder", "'actorder' needs 'gptq'");
  expect_error("w4-damp0.1", "'damp0.1' needs 'gptq'");
  expect_error("w4-gptq-damp2", "dampening 2 outside [0, 1] in part 'damp2'");
  expect_error("w8a8-alpha0.5", "'alpha0.5' needs 'smoothquant'");
  expect_error("w8a8-smoothquant-alpha1.5", "alpha 1.5 outside [0, 1] in part 'alpha1.5'");
  expect_error("w4-static", "'static' needs quantized activations");
  expect_error("a8g64-static", "conflicts with activation groups in part 'a8g64'");
  expect_error("w4-seed3", "'seed3' needs 'stochastic' rounding");
  expect_error("w4a8-stochastic@a-seed", "missing seed");
  expect_error("w4-asym@kv", "KV cache is not quantized in this spec in part 'asym@kv'");
  expect_error("w4-clip0.9@a", "activations are not quantized in this spec in part 'clip0.9@a'");
  expect_error("w4-asym@x", "unknown target 'x' after '@'");
  expect_error("w4-gptq@w", "'gptq' cannot be restricted to a target");
  expect_error("w4-clip1.5", "clip ratio 1.5 outside (0, 1] in part 'clip1.5'");
  expect_error("w4-clip0", "clip ratio 0 outside (0, 1]");
  expect_error("w4-clip", "missing number after 'clip' in part 'clip'");
  expect_error("w4-clip0..9", "bad number '0..9'");
  expect_error("w4-clip.9", "bad number '.9'");
  expect_error("w4-clip0.", "bad number '0.'");
  expect_error("w4-clipx", "unknown part 'clipx'");
  expect_error("w4-scale2", "scale factor 2 outside (0, 2) in part 'scale2'");
  expect_error("w4-scale0", "scale factor 0 outside (0, 2)");
  expect_error("w4-zero3", "zero-point factor 3 outside [0, 2] in part 'zero3'");
  expect_error("fp16-w4", "'fp16' stands alone");
  expect_error("w4-fp32", "'fp32' stands alone");
  expect_error("fp32-fp32", "'fp32' stands alone");
  expect_error("llmint8-w8", "part 'w8' not allowed with 'llmint8'");
  expect_error("llmint8-asym", "part 'asym' not allowed with 'llmint8'");
  expect_error("llmint8-t0", "outlier threshold must be positive");
  expect_error("llmint8-t4-t5", "conflicting parts 't4' and 't5'");
  expect_error("w8-llmint8", "'llmint8' must be the first part");
  expect_error("w3-spqr", "'spqr' must be the first part");
  expect_error("spqr", "'spqr' needs a weight bits part next");
  expect_error("spqr-gptq", "'spqr' needs a weight bits part next");
  expect_error("spqr-w3a8", "spqr quantizes weights only in part 'w3a8'");
  expect_error("spqr-w3t", "spqr quantizes in groups, not per tensor");
  expect_error("spqr-w3-gptq", "'gptq' cannot be combined with spqr");
  expect_error("spqr-w3-asym", "'asym' not allowed with spqr");
  expect_error("w4-t6", "outlier threshold 't' is only for llmint8 in part 't6'");
}

TEST(Spec, HandBuiltSpecWithoutStringFormIsRejected) {
  QuantSpec q;
  q.family = Family::Int;  // no targets
  EXPECT_THROW((void)q.str(), Error);

  QuantSpec r = QuantSpec::parse("w4");
  r.weights->seed = 5;  // a seed without stochastic rounding has no spelling
  EXPECT_THROW((void)r.str(), Error);

  QuantSpec s = QuantSpec::parse("w4");
  s.damp = 0.2;  // dampening without GPTQ
  EXPECT_THROW((void)s.str(), Error);

  QuantSpec t = QuantSpec::parse("w4g128-gptq");
  t.damp = 0.2;
  t.act_order = true;
  EXPECT_EQ(t.str(), "w4g128-gptq-actorder-damp0.2");
}

TEST(Spec, NamesOfEnums) {
  EXPECT_EQ(method_name(Method::Gptq), "gptq");
  EXPECT_EQ(method_name(Method::Awq), "awq");
  EXPECT_EQ(method_name(Method::SmoothQuant), "smoothquant");
  EXPECT_EQ(target_name(Target::KV), "kv");
}

}  // namespace
}  // namespace qeval::quant
