#include "qeval/perf/bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "qeval/engine/engine.h"
#include "qeval/io/model.h"
#include "qeval/perf/energy.h"
#include "qeval/perf/machine.h"
#include "qeval/quant/export.h"
#include "qeval/quant/in_memory.h"
#include "qeval/quant/spec.h"
#include "qeval/tokenizer/tokenizer.h"
#include "qeval/util/error.h"

namespace qeval::perf {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string with_batch(std::string name, int64_t batch) { return batch > 1 ? name + "@b" + std::to_string(batch) : name; }

TokenId greedy(std::span<const float> logits) {
  return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// One measured repetition of a case.
struct RepTiming {
  double prefill_s = 0, ttft_s = 0, decode_s = 0, total_s = 0;
  std::vector<double> itl_s;
};

RepTiming run_once(Engine& engine, std::vector<KVCache>& caches, const std::vector<std::vector<TokenId>>& prompts,
                   int64_t gen_tokens) {
  // Every sequence of the batch goes through one batched forward pass per step (prefill: all
  // prompts together; decode: one new token per sequence), as a batching server runs them.
  const size_t batch = caches.size();
  const int64_t vocab = engine.vocab_size();
  std::vector<KVCache*> cache_ptrs(batch);
  std::vector<std::span<const TokenId>> step(batch);
  std::vector<TokenId> next(batch);
  for (size_t b = 0; b < batch; ++b) {
    caches[b].clear();
    cache_ptrs[b] = &caches[b];
    step[b] = prompts[b];
  }
  auto pick_next = [&](std::span<const float> logits) {
    for (size_t b = 0; b < batch; ++b) {
      next[b] = greedy(logits.subspan(b * static_cast<size_t>(vocab), static_cast<size_t>(vocab)));
      step[b] = {&next[b], 1};
    }
  };
  RepTiming r;
  const Clock::time_point start = Clock::now();
  pick_next(engine.append_batch(cache_ptrs, step));
  const Clock::time_point first = Clock::now();
  r.prefill_s = seconds_between(start, first);
  r.ttft_s = r.prefill_s;
  r.itl_s.reserve(static_cast<size_t>(gen_tokens - 1));
  Clock::time_point prev = first;
  for (int64_t i = 1; i < gen_tokens; ++i) {
    pick_next(engine.append_batch(cache_ptrs, step));
    const Clock::time_point t = Clock::now();
    r.itl_s.push_back(seconds_between(prev, t));
    prev = t;
  }
  r.decode_s = seconds_between(first, prev);
  r.total_s = seconds_between(start, prev);
  return r;
}

std::string human_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.2f} KiB", b / 1024.0);
}

std::string human_params(double p) {
  if (p >= 1e9) return fmt::format("{:.2f} B", p / 1e9);
  if (p >= 1e6) return fmt::format("{:.2f} M", p / 1e6);
  return fmt::format("{:.2f} K", p / 1e3);
}

}  // namespace

void BenchConfig::validate() const {
  if (prompt_lengths.empty()) fail("bench: --prompt needs at least one length");
  for (int64_t p : prompt_lengths)
    if (p < 1) fail(fmt::format("bench: --prompt lengths must be >= 1 (got {})", p));
  if (gen_tokens < 2) fail(fmt::format("bench: --gen must be >= 2 (got {}; the first token comes from prefill)", gen_tokens));
  if (batch_sizes.empty()) fail("bench: --batch needs at least one size");
  for (int64_t b : batch_sizes)
    if (b < 1 || b > 4096) fail(fmt::format("bench: --batch sizes must be in 1..4096 (got {})", b));
  if (reps < 1) fail(fmt::format("bench: --reps must be >= 1 (got {})", reps));
  if (warmup < 0) fail(fmt::format("bench: --warmup must be >= 0 (got {})", warmup));
  if (threads < 0) fail(fmt::format("bench: --threads must be >= 0 (got {})", threads));
  if (sample_interval_ms < 1) fail("bench: sample interval must be >= 1 ms");
}

std::string BenchCase::prefill_name() const { return with_batch("pp" + std::to_string(prompt_tokens), batch); }
std::string BenchCase::decode_name() const { return with_batch("tg" + std::to_string(gen_tokens), batch); }
std::string BenchCase::total_name() const {
  return with_batch("pp" + std::to_string(prompt_tokens) + "+tg" + std::to_string(gen_tokens), batch);
}

nlohmann::json BenchCase::to_json() const {
  return {{"prompt_tokens", prompt_tokens},
          {"gen_tokens", gen_tokens},
          {"batch", batch},
          {"reps", reps},
          {"tests", {{"prefill", prefill_name()}, {"decode", decode_name()}, {"total", total_name()}}},
          {"prefill_seconds", prefill_seconds.to_json()},
          {"prefill_tokens_per_second", prefill_tokens_per_second.to_json()},
          {"ttft_seconds", ttft_seconds.to_json()},
          {"tpot_seconds", tpot_seconds.to_json()},
          {"itl_seconds", itl_seconds.to_json()},
          {"decode_seconds", decode_seconds.to_json()},
          {"decode_tokens_per_second", decode_tokens_per_second.to_json()},
          {"total_seconds", total_seconds.to_json()},
          {"total_tokens_per_second", total_tokens_per_second.to_json()},
          {"kv_cache_bytes", kv_cache_bytes},
          {"resources", resources.to_json()},
          {"energy", energy}};
}

std::string classify_execution(std::string_view kernel, std::string_view source_type, bool weights_quantized) {
  // Dense floats may carry a reason: "dense-f32 (w3g128: no packed kernel)".
  if (kernel.substr(0, 9) != "dense-f32") return "packed";
  if (!weights_quantized && (source_type == "f32" || source_type == "F32")) return "float";
  return "dequantized-float";
}

std::string overall_execution(const std::vector<LinearKernel>& kernels) {
  std::set<std::string> kinds;
  for (const LinearKernel& k : kernels)
    if (k.execution != "float") kinds.insert(k.execution);
  if (kinds.empty()) return "float";
  if (kinds.size() > 1) return "mixed";
  if (*kinds.begin() == "packed") return "packed";
  return "dequantized-float (simulated quantization: no speed-up expected)";
}

nlohmann::json BenchResult::to_json() const {
  nlohmann::json j;
  j["model"] = model_path;
  j["model_name"] = model_name;
  j["architecture"] = architecture;
  j["spec"] = spec;
  j["params"] = params;
  j["model_bytes"] = model_bytes;
  j["bits_per_weight"] = bits_per_weight;
  j["linear_params"] = linear_params;
  j["linear_bits_per_weight"] = linear_bits_per_weight;
  j["executed_linear_bytes"] = executed_linear_bytes;
  j["executed_linear_bits_per_weight"] = executed_linear_bits_per_weight;
  j["sizes_from"] = bits_from_spec ? "spec effective bits (quantized in memory)" : "file tensor bytes";
  j["weights_execution"] = weights_execution;
  j["kernel_summary"] = kernel_summary;
  nlohmann::json ks = nlohmann::json::array();
  for (const LinearKernel& k : kernels)
    ks.push_back({{"name", k.name}, {"kernel", k.kernel}, {"source_type", k.source_type}, {"execution", k.execution}});
  j["kernels"] = ks;
  j["kv_cache_format"] = kv_cache_format;
  j["batch_mode"] = batch_mode;
  j["threads"] = threads;
  j["config"] = {{"prompt_lengths", config.prompt_lengths}, {"gen_tokens", config.gen_tokens},
                 {"batch_sizes", config.batch_sizes},       {"reps", config.reps},
                 {"warmup", config.warmup},                 {"threads", config.threads},
                 {"spec", config.spec},                     {"calib_file", config.calib_file},
                 {"seed", config.seed},                     {"kv_f16", config.kv_f16},
                 {"ggml_compat", config.ggml_compat},       {"sample_interval_ms", config.sample_interval_ms}};
  nlohmann::json cs = nlohmann::json::array();
  nlohmann::json tests = nlohmann::json::array();
  for (const BenchCase& c : cases) {
    cs.push_back(c.to_json());
    auto row = [&](const std::string& name, const Summary& s) {
      tests.push_back({{"test", name}, {"tokens_per_second", s.median}, {"stdev", s.stdev}, {"n", s.n}});
    };
    row(c.prefill_name(), c.prefill_tokens_per_second);
    row(c.decode_name(), c.decode_tokens_per_second);
    row(c.total_name(), c.total_tokens_per_second);
  }
  j["cases"] = cs;
  j["tests"] = tests;
  j["peak_rss_bytes"] = peak_rss_bytes;
  j["load_seconds"] = load_seconds;
  j["machine"] = machine;
  return j;
}

BenchResult run_bench(const std::string& model_path, const BenchConfig& config,
                      const std::function<void(const std::string&)>& progress) {
  config.validate();
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };
  const quant::QuantSpec spec = quant::QuantSpec::parse(config.spec);
  BenchResult res;
  res.config = config;
  res.model_path = model_path;
  res.spec = spec.str();

  const Clock::time_point load_start = Clock::now();
  say("bench: loading " + model_path);
  const Model model = quant::load_any_model(model_path);
  res.model_name = std::filesystem::path(model_path).filename().string();
  res.architecture = model.config.architecture;
  const int64_t max_prompt = *std::max_element(config.prompt_lengths.begin(), config.prompt_lengths.end());
  const int64_t needed_ctx = max_prompt + config.gen_tokens;
  Engine engine(model, {.threads = config.threads,
                        .ggml_compat = config.ggml_compat,
                        .kv_f16 = config.kv_f16,
                        .context_length = std::max<int64_t>(needed_ctx, model.config.context_length)});

  std::unique_ptr<quant::InMemoryQuantization> quantized;
  if (spec.family != quant::Family::Fp32) {
    say("bench: quantizing in memory with " + res.spec);
    auto tok = load_tokenizer(model);
    // Installs its run-time hooks (and the KV cache format) on the engine; random prompts: no
    // evaluated text to check the calibration against.
    quantized = quant::quantize_for_command(
        engine, model, *tok, res.spec,
        {config.calib_file, {.samples = config.calib_samples, .seqlen = config.calib_seqlen, .seed = config.calib_seed}}, {},
        "bench", [&](const std::string& line) { say("bench: " + line); });
  }
  res.kv_cache_format = quantized ? quantized->kv_storage : engine.kv_format().name();
  if (config.kv_f16 && !engine.kv_format().quantized()) res.kv_cache_format += " (values rounded to f16, stored as f32)";
  res.load_seconds = seconds_between(load_start, Clock::now());
  res.threads = engine.threads();

  // Sizes: file tensor bytes, with the spec's effective bits for the linears it quantized.
  std::set<std::string> quantized_names;
  if (quantized)
    for (const auto& q : quantized->result.linears) quantized_names.insert(q.id.name());
  res.params = model.parameter_count();
  int64_t file_bytes = 0;
  for (const auto& [name, t] : model.tensors)
    if (!model.is_alias(name)) file_bytes += static_cast<int64_t>(t.nbytes);
  double linear_bits = 0;
  double replaced_bytes = 0;
  std::map<std::string, int> kernel_counts;
  for (const LinearId& id : engine.linear_ids()) {
    const Linear& L = engine.linear(id);
    const std::string name = id.name();
    const bool q = quantized_names.count(name) > 0;
    const int64_t numel = L.in_features() * L.out_features();
    res.linear_params += numel;
    const Tensor* t = model.find(name + ".weight");
    const double tbytes = t ? static_cast<double>(t->nbytes) : static_cast<double>(numel) * 4.0;
    if (q) {
      linear_bits += static_cast<double>(numel) * quantized->result.bits_per_weight;
      if (t && !model.is_alias(name + ".weight")) replaced_bytes += tbytes - static_cast<double>(numel) * quantized->result.bits_per_weight / 8.0;
    } else {
      linear_bits += tbytes * 8.0;
    }
    LinearKernel k;
    k.name = name;
    k.kernel = std::string(L.weights->format());
    k.source_type = std::string(dtype_name(L.source_type));
    std::transform(k.source_type.begin(), k.source_type.end(), k.source_type.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    res.executed_linear_bytes += static_cast<int64_t>(L.weights->weight_bytes());
    k.execution = classify_execution(k.kernel, k.source_type, q);
    ++kernel_counts[k.kernel];
    res.kernels.push_back(std::move(k));
  }
  res.bits_from_spec = !quantized_names.empty();
  res.model_bytes = static_cast<int64_t>(static_cast<double>(file_bytes) - replaced_bytes);
  res.bits_per_weight = res.params > 0 ? 8.0 * static_cast<double>(res.model_bytes) / static_cast<double>(res.params) : 0;
  res.linear_bits_per_weight = res.linear_params > 0 ? linear_bits / static_cast<double>(res.linear_params) : 0;
  res.executed_linear_bits_per_weight =
      res.linear_params > 0 ? 8.0 * static_cast<double>(res.executed_linear_bytes) / static_cast<double>(res.linear_params) : 0;
  res.weights_execution = overall_execution(res.kernels);
  for (const auto& [kernel, n] : kernel_counts) {
    if (!res.kernel_summary.empty()) res.kernel_summary += ", ";
    res.kernel_summary += fmt::format("{} x{}", kernel, n);
  }
  res.batch_mode = "batched: one forward pass per step for all B sequences (Engine::append_batch; prefill of all prompts together)";
  say(fmt::format("bench: {} ({}), {} threads, weights: {} [{}], KV cache: {}", res.model_name, res.spec, res.threads,
                  res.weights_execution, res.kernel_summary, res.kv_cache_format));

  const EnergyMeter energy;
  if (!energy.available()) say("bench: energy not available: " + energy.unavailable_reason());
  std::mt19937_64 rng(config.seed);
  std::uniform_int_distribution<TokenId> pick(0, static_cast<TokenId>(engine.vocab_size() - 1));

  for (int64_t P : config.prompt_lengths) {
    for (int64_t B : config.batch_sizes) {
      BenchCase c;
      c.prompt_tokens = P;
      c.gen_tokens = config.gen_tokens;
      c.batch = B;
      c.reps = config.reps;
      std::vector<std::vector<TokenId>> prompts(static_cast<size_t>(B));
      for (auto& p : prompts) {
        p.resize(static_cast<size_t>(P));
        for (TokenId& t : p) t = pick(rng);
      }
      std::vector<KVCache> caches;
      caches.reserve(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) caches.push_back(engine.new_cache(P + config.gen_tokens));
      c.kv_cache_bytes = B * engine.kv_cache_bytes(P + config.gen_tokens);  // in the engine's cache format
      for (int w = 0; w < config.warmup; ++w) {
        say(fmt::format("bench: {} warm-up {}/{}", c.total_name(), w + 1, config.warmup));
        run_once(engine, caches, prompts, config.gen_tokens);
      }
      std::vector<double> prefill_s, prefill_tps, ttft, tpot, itl, decode_s, decode_tps, total_s, total_tps;
      ResourceSampler sampler(0, res.threads, std::chrono::milliseconds(config.sample_interval_ms));
      const std::vector<uint64_t> e0 = energy.read();
      sampler.start();
      for (int r = 0; r < config.reps; ++r) {
        const RepTiming t = run_once(engine, caches, prompts, config.gen_tokens);
        const double gen_after_first = static_cast<double>(B * (config.gen_tokens - 1));
        prefill_s.push_back(t.prefill_s);
        prefill_tps.push_back(static_cast<double>(B * P) / t.prefill_s);
        ttft.push_back(t.ttft_s);
        tpot.push_back(t.decode_s / static_cast<double>(config.gen_tokens - 1));
        itl.insert(itl.end(), t.itl_s.begin(), t.itl_s.end());
        decode_s.push_back(t.decode_s);
        decode_tps.push_back(gen_after_first / t.decode_s);
        total_s.push_back(t.total_s);
        total_tps.push_back(static_cast<double>(B * (P + config.gen_tokens)) / t.total_s);
        say(fmt::format("bench: {} rep {}/{}: prefill {:.3f} s ({:.2f} t/s), ttft {:.3f} s, decode {:.3f} s ({:.2f} t/s)",
                        c.total_name(), r + 1, config.reps, t.prefill_s, prefill_tps.back(), t.ttft_s, t.decode_s,
                        decode_tps.back()));
      }
      c.resources = sampler.stop();
      const std::vector<uint64_t> e1 = energy.read();
      c.energy = energy_json(energy, e0, e1, c.resources.wall_seconds);
      c.prefill_seconds = summarize(prefill_s);
      c.prefill_tokens_per_second = summarize(prefill_tps);
      c.ttft_seconds = summarize(ttft);
      c.tpot_seconds = summarize(tpot);
      c.itl_seconds = summarize(itl);
      c.decode_seconds = summarize(decode_s);
      c.decode_tokens_per_second = summarize(decode_tps);
      c.total_seconds = summarize(total_s);
      c.total_tokens_per_second = summarize(total_tps);
      res.cases.push_back(std::move(c));
    }
  }
  res.peak_rss_bytes = read_process(0).hwm_bytes;
  res.machine = describe_machine(res.threads);
  return res;
}

std::string format_bench_table(const BenchResult& r) {
  std::string model = r.model_name + (r.spec == "fp32" ? "" : " [" + r.spec + "]");
  std::string backend = "CPU " + r.kernel_summary;
  std::string out = "| model | size | params | backend | threads | test | t/s |\n| --- | ---: | ---: | --- | ---: | ---: | ---: |\n";
  auto row = [&](const std::string& test, const Summary& s) {
    out += fmt::format("| {} | {} | {} | {} | {} | {} | {:.2f} ± {:.2f} |\n", model, human_bytes(static_cast<double>(r.model_bytes)),
                       human_params(static_cast<double>(r.params)), backend, r.threads, test, s.median, s.stdev);
  };
  for (const BenchCase& c : r.cases) {
    row(c.prefill_name(), c.prefill_tokens_per_second);
    row(c.decode_name(), c.decode_tokens_per_second);
    row(c.total_name(), c.total_tokens_per_second);
  }
  out += fmt::format(
      "\nweights: {}; {:.2f} bits per weight ({}); linears {:.2f} bits per weight stored, {:.2f} as the kernels read them; "
      "KV cache: {}\n",
      r.weights_execution, r.bits_per_weight, r.bits_from_spec ? "spec effective bits" : "file tensor bytes",
      r.linear_bits_per_weight, r.executed_linear_bits_per_weight, r.kv_cache_format);
  out += "\n| test | TTFT ms | TPOT ms | ITL p50 / p90 / p99 ms | KV cache | peak RSS | CPU util | energy |\n"
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n";
  for (const BenchCase& c : r.cases) {
    std::string energy = c.energy.value("available", false)
                             ? fmt::format("{:.1f} J", c.energy.value("joules", 0.0))
                             : std::string("n/a");
    out += fmt::format("| {} | {:.1f} ± {:.1f} | {:.2f} ± {:.2f} | {:.2f} / {:.2f} / {:.2f} | {} | {} | {:.0f}% | {} |\n",
                       c.total_name(), c.ttft_seconds.median * 1e3, c.ttft_seconds.stdev * 1e3, c.tpot_seconds.median * 1e3,
                       c.tpot_seconds.stdev * 1e3, c.itl_seconds.p50 * 1e3, c.itl_seconds.p90 * 1e3, c.itl_seconds.p99 * 1e3,
                       human_bytes(static_cast<double>(c.kv_cache_bytes)), human_bytes(static_cast<double>(c.resources.rss_peak_bytes)),
                       c.resources.cpu_utilization * 100.0, energy);
  }
  if (!r.cases.empty() && !r.cases.front().energy.value("available", false))
    out += "\nenergy not available: " + r.cases.front().energy.value("reason", std::string()) + "\n";
  out += fmt::format("peak resident memory (VmHWM, whole run incl. loading): {}\n", human_bytes(static_cast<double>(r.peak_rss_bytes)));
  return out;
}

}  // namespace qeval::perf
