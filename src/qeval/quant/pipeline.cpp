#include "qeval/quant/pipeline.h"

#include <cstdio>

#include "qeval/quant/awq.h"
#include "qeval/quant/gptq.h"
#include "qeval/quant/llmint8.h"
#include "qeval/quant/rtn.h"
#include "qeval/quant/smoothquant.h"
#include "qeval/quant/spqr.h"
#include "qeval/util/error.h"
#include "qeval/util/half.h"

namespace qeval::quant {

namespace {

struct LinState {
  LinearId id;
  int64_t rows = 0, cols = 0;
  std::vector<float> w;         // current (transformed) float weights
  std::vector<float> absmax, mean_abs;
  std::vector<double> h;        // [cols, cols], empty when not collected
  bool touched = false;
};

// X' = X / s for this linear's input: statistics follow.
void rescale_input_stats(LinState& L, std::span<const float> s) {
  for (int64_t j = 0; j < L.cols; ++j) {
    const float v = s[static_cast<size_t>(j)];
    if (!L.absmax.empty()) L.absmax[static_cast<size_t>(j)] /= v;
    if (!L.mean_abs.empty()) L.mean_abs[static_cast<size_t>(j)] /= v;
  }
  if (!L.h.empty())
    for (int64_t i = 0; i < L.cols; ++i)
      for (int64_t j = 0; j < L.cols; ++j)
        L.h[static_cast<size_t>(i * L.cols + j)] /= static_cast<double>(s[static_cast<size_t>(i)]) * s[static_cast<size_t>(j)];
}

// Input of every linear in `group` divided by s (fold done by the caller): W columns *= s.
void apply_input_scales(std::vector<LinState*>& group, std::span<const float> s) {
  for (LinState* L : group) {
    scale_columns(L->w, L->rows, L->cols, s);
    rescale_input_stats(*L, s);
    L->touched = true;
  }
}

std::string fmt_double(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// The linear whose input statistics stand for `role`'s: q/k/v read one input, so do gate/up.
LinearRole stats_source(LinearRole role, bool gated) {
  switch (role) {
    case LinearRole::AttnK:
    case LinearRole::AttnV: return LinearRole::AttnQ;
    case LinearRole::FfnUp: return gated ? LinearRole::FfnGate : LinearRole::FfnUp;
    default: return role;
  }
}

}  // namespace

bool needs_calibration(const QuantSpec& spec) {
  if (!spec.weights) return false;
  return spec.family == Family::LlmInt8 || spec.uses_gptq() || spec.uses(Method::Awq) || spec.uses(Method::SmoothQuant);
}

bool pipeline_supports(const QuantSpec& spec, std::string* why) {
  auto no = [&](const std::string& m) {
    if (why) *why = m;
    return false;
  };
  if (spec.family == Family::Fp32 || spec.family == Family::LlmInt8 || spec.family == Family::SpQR) return true;
  if (spec.family != Family::Int)
    return no("the weight pipeline handles fp32, integer, llmint8 and spqr specs, not '" + spec.str() + "'");
  if (!spec.weights && !spec.methods.empty()) return no("methods need quantized weights");
  return true;
}

QuantizedModelResult quantize_model(Engine& engine, const QuantSpec& spec, const Calibration& calib,
                                    const PipelineOptions& opt) {
  std::string why;
  if (!pipeline_supports(spec, &why)) throw Error("quantize: " + why);
  QuantizedModelResult res;
  res.spec = spec;
  if (spec.family == Family::Fp32 || !spec.weights) return res;
  const QuantizerConfig& cfg = *spec.weights;
  const bool llmint8 = spec.family == Family::LlmInt8;
  const bool spqr = spec.family == Family::SpQR;
  const bool gptq = spec.uses_gptq();
  const bool awq = spec.uses(Method::Awq);
  const bool smooth = spec.uses(Method::SmoothQuant);
  if (!llmint8 && !spqr) check_weight_config(cfg, gptq ? "gptq" : "rtn");
  if (!opt.layer_configs.empty()) {
    if (llmint8 || spqr || awq || smooth)
      throw Error("quantize: per-layer bit widths (mixed precision) apply to rtn and gptq specs, not '" + spec.str() + "'");
    for (const auto& [id, c] : opt.layer_configs) check_weight_config(c, id.name());
  }
  if (needs_calibration(spec) && calib.samples.empty())
    throw Error("quantize: " + spec.str() + " needs calibration samples" +
                (llmint8 ? " (outlier features are chosen from calibration magnitudes)" : ""));
  const bool need_h = gptq || awq || (spqr && !calib.samples.empty());
  const bool need_forward = need_h || smooth || llmint8;
  const ModelConfig& mc = engine.config();
  auto log = [&](const std::string& s) {
    res.notes.push_back(s);
    if (opt.log) opt.log(s);
  };
  if (spqr && calib.samples.empty()) log("spqr without calibration: outliers by unweighted squared error");

  auto quantize_state = [&](LinState& L) {
    if (!opt.quantize_weights) {
      if (L.touched) engine.set_linear_weights(L.id, L.w);
      return;
    }
    QuantizedLinear ql;
    ql.id = L.id;
    std::vector<float> deq;
    if (llmint8) {
      LlmInt8Result r = llmint8_quantize(L.w.data(), L.rows, L.cols, L.absmax, static_cast<float>(spec.outlier_threshold), cfg.bits);
      ql.q = std::move(r.quantized);
      ql.bits_per_weight = r.effective_bits;
      ql.outlier_inputs = std::move(r.outlier_columns);
      deq = std::move(r.weights);
    } else if (spqr) {
      SpqrResult r = spqr_quantize(L.w, L.rows, L.cols, spqr_options(spec), L.h);
      ql.q = std::move(r.quantized);
      ql.bits_per_weight = r.effective_bits;
      deq = std::move(r.weights);
    } else {
      const auto own = opt.layer_configs.find(L.id);
      const QuantizerConfig& lc = own != opt.layer_configs.end() ? own->second : cfg;
      if (gptq) {
        GptqOptions go;
        go.damp = spec.damp;
        go.act_order = spec.act_order;
        ql.q = gptq_quantize(lc, L.w, L.rows, L.cols, L.h, go).quantized;
      } else {
        ql.q = rtn_quantize(lc, L.w, L.rows, L.cols);
      }
      if (opt.fp16_scales) {
        // Scales in F16; for asymmetric grids the offset S * Z is stored in F16 too (as GGUF Q4_1's
        // m), so the zero-point becomes fp16(S * Z) / S (generally not an integer).
        for (size_t i = 0; i < ql.q.scales.size(); ++i) {
          float& sc = ql.q.scales[i];
          sc = fp16_to_f32(f32_to_fp16(sc));
          if (!lc.symmetric && sc != 0.0f) ql.q.zeros[i] = fp16_to_f32(f32_to_fp16(sc * ql.q.zeros[i])) / sc;
        }
      }
      ql.bits_per_weight = effective_bits(lc, L.rows, L.cols, 16);
      deq = ql.q.dequantize();
    }
    if (!L.h.empty() && opt.measure_errors) {
      ql.error = output_error(L.w, deq, L.rows, L.cols, L.h);
      ql.error_before = output_error(L.w, fake_quantize(ql.q.config, L.w, L.rows, L.cols), L.rows, L.cols, L.h);
    }
    engine.set_linear_weights(L.id, std::move(deq));
    res.quantized_params += L.rows * L.cols;
    res.bits_per_weight += ql.bits_per_weight * static_cast<double>(L.rows * L.cols);
    res.linears.push_back(std::move(ql));
  };

  auto load_state = [&](const LinearId& id, const CalibrationCollector* col, LinearRole source) {
    LinState L;
    L.id = id;
    const Linear& lin = engine.linear(id);
    L.rows = lin.out_features();
    L.cols = lin.in_features();
    L.w = lin.weights->to_f32();
    if (col) {
      const LinearStats* st = col->find({id.layer, source});
      if (!st) throw Error("quantize: no calibration inputs reached " + id.name());
      L.absmax = st->absmax;
      L.mean_abs = st->mean_abs();
      if (st->hessian) L.h = st->hessian->hessian();
    }
    return L;
  };
  auto fold_scales = [&](std::vector<float> s) {
    if (opt.exact_folding) round_to_power_of_two(s);
    return s;
  };

  // Hidden states of every calibration sample at the input of the current block.
  const int64_t seqlen = calib.samples.empty() ? 0 : static_cast<int64_t>(calib.samples[0].size());
  std::vector<float> hidden, scratch;
  if (need_forward) {
    std::vector<TokenId> flat;
    flat.reserve(static_cast<size_t>(seqlen) * calib.samples.size());
    for (const auto& smp : calib.samples) {
      if (static_cast<int64_t>(smp.size()) != seqlen) throw Error("quantize: calibration samples differ in length");
      flat.insert(flat.end(), smp.begin(), smp.end());
    }
    hidden = engine.embed(flat, seqlen);
  }
  ForwardHooks* const prev_hooks = engine.hooks();
  // One pass of block l over the kept hidden states; `hooks` observe it, `in_place` advances them.
  auto block_pass = [&](int l, ForwardHooks* hooks, bool in_place) {
    std::vector<float>* buf = &hidden;
    if (!in_place) {
      scratch = hidden;
      buf = &scratch;
    }
    engine.set_hooks(hooks);
    try {
      engine.forward_block(l, *buf, seqlen);
    } catch (...) {
      engine.set_hooks(prev_hooks);
      throw;
    }
    engine.set_hooks(prev_hooks);
  };

  const int n_layers = static_cast<int>(mc.n_layers);
  for (int l = 0; l < n_layers; ++l) {
    std::unique_ptr<CalibrationCollector> col;
    if (need_forward) {
      col = std::make_unique<CalibrationCollector>(need_h, [l, gated = mc.gated_ffn](const LinearId& id) {
        return id.layer == l && stats_source(id.role, gated) == id.role;
      });
      block_pass(l, col.get(), false);
    }
    std::map<LinearRole, LinState> st;
    for (const LinearId& id : engine.linear_ids())
      if (id.layer == l) st.emplace(id.role, load_state(id, col.get(), stats_source(id.role, mc.gated_ffn)));
    col.reset();
    scratch = std::vector<float>();
    auto has = [&](LinearRole r) { return st.count(r) > 0; };
    auto get = [&](LinearRole r) -> LinState& { return st.at(r); };
    std::vector<LinState*> qkv = {&get(LinearRole::AttnQ), &get(LinearRole::AttnK), &get(LinearRole::AttnV)};
    std::vector<LinState*> gu;
    if (has(LinearRole::FfnGate)) gu.push_back(&get(LinearRole::FfnGate));
    gu.push_back(&get(LinearRole::FfnUp));
    auto spans = [](const std::vector<LinState*>& g) {
      std::vector<std::span<const float>> v;
      for (const LinState* L : g) v.emplace_back(L->w);
      return v;
    };
    const std::string blk = "blk." + std::to_string(l);

    for (Method m : spec.methods) {
      if (m == Method::SmoothQuant) {
        for (auto [group, site] : {std::pair{&qkv, NormSite::Attn}, std::pair{&gu, NormSite::Ffn}}) {
          const std::vector<float> s =
              fold_scales(smoothquant_scales((*group)[0]->absmax, spans(*group), (*group)[0]->cols, spec.smooth_alpha));
          fold_into_norm(engine, l, site, s);
          apply_input_scales(*group, s);
        }
        log(blk + " smoothquant qkv, gate/up (alpha " + fmt_double("%.2f", spec.smooth_alpha) + ")");
      } else if (m == Method::Awq) {
        auto search = [&](std::vector<LinState*>& group) {
          return awq_search_scales(cfg, spans(group), group[0]->cols, group[0]->mean_abs, group[0]->h, opt.awq_grid,
                                   opt.exact_folding);
        };
        std::string line = blk + " awq alpha:";
        // q/k/v <- attn_norm
        {
          auto r = search(qkv);
          fold_into_norm(engine, l, NormSite::Attn, r.scales);
          apply_input_scales(qkv, r.scales);
          line += " qkv " + fmt_double("%.2f", r.alpha);
        }
        // o <- v (no GQA, no v bias)
        {
          LinState& v = get(LinearRole::AttnV);
          LinState& o = get(LinearRole::AttnOutput);
          if (v.rows == o.cols && engine.linear_bias(v.id).empty()) {
            std::vector<LinState*> g = {&o};
            auto r = search(g);
            unscale_rows(v.w, v.rows, v.cols, r.scales);
            v.touched = true;
            apply_input_scales(g, r.scales);
            line += " o " + fmt_double("%.2f", r.alpha);
          }
        }
        // gate/up <- ffn_norm
        {
          auto r = search(gu);
          fold_into_norm(engine, l, NormSite::Ffn, r.scales);
          apply_input_scales(gu, r.scales);
          line += " gate/up " + fmt_double("%.2f", r.alpha);
        }
        // down <- up (gated FFN: act = f(gate) * up is linear in up)
        if (mc.gated_ffn) {
          LinState& up = get(LinearRole::FfnUp);
          LinState& down = get(LinearRole::FfnDown);
          std::vector<float>& ub = engine.linear_bias(up.id);
          std::vector<LinState*> g = {&down};
          auto r = search(g);
          unscale_rows(up.w, up.rows, up.cols, r.scales);
          for (size_t j = 0; j < ub.size(); ++j) ub[j] /= r.scales[j];
          up.touched = true;
          apply_input_scales(g, r.scales);
          line += " down " + fmt_double("%.2f", r.alpha);
        }
        if (opt.awq_clip && opt.quantize_weights) {
          double before = 0, after = 0;
          for (auto& [role, L] : st) {
            if (role == LinearRole::AttnQ || role == LinearRole::AttnK) continue;
            auto c = awq_clip_search(cfg, L.w, L.rows, L.cols, L.h, opt.clip_grid, opt.clip_min_ratio);
            before += c.loss_before;
            after += c.loss_after;
            L.touched = true;
          }
          line += "; clip error " + fmt_double("%.4g", before) + " -> " + fmt_double("%.4g", after);
        }
        log(line);
      }
    }
    for (auto& [role, L] : st) quantize_state(L);
    st.clear();
    if (need_forward && l + 1 < n_layers) block_pass(l, nullptr, true);  // the quantized block's outputs
    if (opt.progress) opt.progress(l + 1, n_layers);
  }
  hidden = std::vector<float>();

  if (opt.include_output) {
    std::unique_ptr<CalibrationCollector> col;
    if (need_forward) {
      col = std::make_unique<CalibrationCollector>(need_h, [](const LinearId& id) { return id.role == LinearRole::Output; });
      // The head only sees positions whose logits are wanted: request them all.
      ForwardHooks* prev = engine.hooks();
      engine.set_hooks(col.get());
      for (const auto& s : calib.samples) {
        const SequenceView v{s, 0};
        engine.evaluate({&v, 1}, [](size_t, int64_t, const float*) {});
      }
      engine.set_hooks(prev);
    }
    LinState L = load_state(LinearId::output(), col.get(), LinearRole::Output);
    L.touched = true;
    quantize_state(L);
  }
  if (res.quantized_params > 0) res.bits_per_weight /= static_cast<double>(res.quantized_params);
  return res;
}

}  // namespace qeval::quant
