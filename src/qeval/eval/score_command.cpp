#include "qeval/eval/score_command.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>

#include "qeval/eval/metrics/bleu.h"
#include "qeval/eval/metrics/chrf.h"
#include "qeval/eval/metrics/ece.h"
#include "qeval/eval/metrics/rouge.h"
#include "qeval/eval/metrics/squad.h"
#include "qeval/eval/metrics/text.h"
#include "qeval/eval/stats/bootstrap.h"
#include "qeval/eval/stats/summary.h"
#include "qeval/util/error.h"

namespace qeval::eval {
namespace {

using nlohmann::ordered_json;
using Items = std::vector<std::vector<std::string>>;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && std::string_view(s).substr(s.size() - suffix.size()) == suffix;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_file(path, fmt::format("cannot open: {}", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail_file(path, "read error");
  return ss.str();
}

// Lines of a file: '\n'-separated, no item after a final '\n', trailing '\r' and a leading BOM
// removed, each checked for valid UTF-8.
std::vector<std::string> read_lines(const std::string& path) {
  std::string data = read_all(path);
  if (data.rfind("\xEF\xBB\xBF", 0) == 0) data.erase(0, 3);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < data.size()) {
    size_t nl = data.find('\n', start);
    if (nl == std::string::npos) nl = data.size();
    std::string line = data.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (auto bad = text::find_invalid_utf8(line))
      fail_file(path, fmt::format("line {}: invalid UTF-8 at byte {} of the line", lines.size() + 1, *bad + 1));
    lines.push_back(std::move(line));
    start = nl + 1;
  }
  return lines;
}

nlohmann::json parse_json_line(const std::string& path, size_t lineno, const std::string& line) {
  if (line.find_first_not_of(" \t") == std::string::npos)
    fail_file(path, fmt::format("line {}: empty line (expected one JSON value)", lineno));
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    fail_file(path, fmt::format("line {}: invalid JSON at byte {}", lineno, e.byte));
  }
}

ordered_json mean_json(const stats::MeanEstimate& e, double scale = 1.0) {
  return ordered_json{{"mean", scale * e.mean}, {"se", scale * e.se},
                      {"ci95", {scale * e.ci_low, scale * e.ci_high}}};
}

ordered_json bootstrap_json(const stats::BootstrapEstimate& e) {
  return ordered_json{{"se", e.se}, {"ci95", {e.ci_low, e.ci_high}}, {"samples", e.samples}, {"seed", e.seed}};
}

ordered_json bleu_json(const BleuScore& s) {
  return ordered_json{{"score", s.score},   {"counts", s.counts}, {"totals", s.totals}, {"precisions", s.precisions},
                      {"bp", s.bp},         {"sys_len", s.sys_len}, {"ref_len", s.ref_len}};
}

stats::BootstrapOptions boot_options(const ScoreOptions& o) { return {o.bootstrap_samples, o.seed, 0.95}; }

std::string boot_text(const stats::BootstrapEstimate& e, int digits) {
  return fmt::format("bootstrap SE {:.{}f}, 95% CI [{:.{}f}, {:.{}f}]; {} resamples, seed {}", e.se, digits, e.ci_low,
                     digits, e.ci_high, digits, e.samples, e.seed);
}

std::string mean_text(const stats::MeanEstimate& e, double scale, int digits) {
  return fmt::format("{:.{}f} ± {:.{}f} (95% CI [{:.{}f}, {:.{}f}])", scale * e.mean, digits, scale * e.se, digits,
                     scale * e.ci_low, digits, scale * e.ci_high, digits);
}

std::string dump(const ordered_json& j) { return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"; }

// ---------------------------------------------------------------- text metrics

std::string score_rouge(const ScoreOptions& o, const std::vector<std::string>& preds, const Items& refs) {
  const size_t n = preds.size();
  std::vector<RougeScores> per(n);
  for (size_t i = 0; i < n; ++i) per[i] = rouge_multi(preds[i], refs[i], o.stem);
  struct Type {
    const char* name;
    RougeScore RougeScores::*field;
  };
  const Type types[] = {{"rouge1", &RougeScores::rouge1},
                        {"rouge2", &RougeScores::rouge2},
                        {"rougeL", &RougeScores::rougeL},
                        {"rougeLsum", &RougeScores::rougeLsum}};
  ordered_json corpus;
  std::string text = fmt::format("rouge: {} items, stemmer {}; mean over items ± standard error\n", n, o.stem ? "on" : "off");
  text += fmt::format("  {:<10} {:<44} {:>9} {:>9}\n", "", "F-measure", "precision", "recall");
  for (const Type& t : types) {
    std::vector<double> p(n), r(n), f(n);
    for (size_t i = 0; i < n; ++i) {
      const RougeScore& s = per[i].*t.field;
      p[i] = s.precision;
      r[i] = s.recall;
      f[i] = s.fmeasure;
    }
    const auto ep = stats::mean_with_se(p), er = stats::mean_with_se(r), ef = stats::mean_with_se(f);
    corpus[t.name] = {{"precision", mean_json(ep)}, {"recall", mean_json(er)}, {"fmeasure", mean_json(ef)}};
    text += fmt::format("  {:<10} {:<44} {:>9.4f} {:>9.4f}\n", t.name, mean_text(ef, 1, 4), ep.mean, er.mean);
  }
  if (!o.json) return text;
  ordered_json items = ordered_json::array();
  for (const RougeScores& s : per) {
    ordered_json item;
    for (const Type& t : types) {
      const RougeScore& x = s.*t.field;
      item[t.name] = {{"precision", x.precision}, {"recall", x.recall}, {"fmeasure", x.fmeasure}};
    }
    items.push_back(std::move(item));
  }
  return dump(ordered_json{{"metric", "rouge"}, {"items", n}, {"stemmer", o.stem}, {"corpus", corpus}, {"per_item", items}});
}

std::string score_bleu(const ScoreOptions& o, const std::vector<std::string>& preds, const Items& refs) {
  const size_t n = preds.size();
  std::vector<BleuStats> seg(n);
  for (size_t i = 0; i < n; ++i) seg[i] = bleu_segment_stats(preds[i], refs[i]);
  auto corpus_of = [&seg](std::span<const uint32_t> w) {
    BleuStats total;
    for (size_t i = 0; i < seg.size(); ++i) {
      if (w[i] == 0) continue;
      BleuStats s = seg[i];
      s.sys_len *= w[i];
      s.ref_len *= w[i];
      for (auto& c : s.counts) c *= w[i];
      for (auto& t : s.totals) t *= w[i];
      total += s;
    }
    return bleu_from_stats(total, false);
  };
  const std::vector<uint32_t> ones(n, 1u);
  const BleuScore corpus = corpus_of(ones);
  const auto boot = stats::bootstrap(
      n, [&](std::span<const uint32_t> w) { return corpus_of(w).score; }, boot_options(o));
  std::vector<double> sentence(n);
  for (size_t i = 0; i < n; ++i) sentence[i] = bleu_from_stats(seg[i], true).score;
  const auto sent_mean = stats::mean_with_se(sentence);
  if (!o.json) {
    const double ratio = corpus.ref_len > 0 ? static_cast<double>(corpus.sys_len) / static_cast<double>(corpus.ref_len) : 0.0;
    return fmt::format(
        "BLEU = {:.2f}  ({})\n  {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})\n"
        "  {} items; sacreBLEU defaults (13a, exp smoothing, mixed case)\n  mean sentence BLEU = {}\n",
        corpus.score, boot_text(boot, 2), corpus.precisions[0], corpus.precisions[1], corpus.precisions[2],
        corpus.precisions[3], corpus.bp, ratio, corpus.sys_len, corpus.ref_len, n, mean_text(sent_mean, 1, 2));
  }
  ordered_json c = bleu_json(corpus);
  c["bootstrap"] = bootstrap_json(boot);
  c["sentence_mean"] = mean_json(sent_mean);
  ordered_json items = ordered_json::array();
  for (size_t i = 0; i < n; ++i) items.push_back(bleu_json(bleu_from_stats(seg[i], true)));
  return dump(ordered_json{{"metric", "bleu"}, {"items", n}, {"corpus", c}, {"per_item", items}});
}

std::string score_chrf(const ScoreOptions& o, const std::vector<std::string>& preds, const Items& refs) {
  const size_t n = preds.size();
  std::vector<ChrfStats> seg(n);
  for (size_t i = 0; i < n; ++i) seg[i] = chrf_segment_stats(preds[i], refs[i]);
  auto corpus_of = [&seg](std::span<const uint32_t> w) {
    ChrfStats total{};
    for (size_t i = 0; i < seg.size(); ++i)
      for (size_t k = 0; k < total.size(); ++k) total[k] += static_cast<int64_t>(w[i]) * seg[i][k];
    return total;
  };
  const std::vector<uint32_t> ones(n, 1u);
  const ChrfStats corpus = corpus_of(ones);
  const double score = chrf_from_stats(corpus);
  const auto boot = stats::bootstrap(
      n, [&](std::span<const uint32_t> w) { return chrf_from_stats(corpus_of(w)); }, boot_options(o));
  std::vector<double> sentence(n);
  for (size_t i = 0; i < n; ++i) sentence[i] = chrf_from_stats(seg[i]);
  const auto sent_mean = stats::mean_with_se(sentence);
  if (!o.json)
    return fmt::format("chrF2 = {:.2f}  ({})\n  {} items; sacreBLEU defaults (char order 6, word order 0, beta 2)\n"
                       "  mean sentence chrF = {}\n",
                       score, boot_text(boot, 2), n, mean_text(sent_mean, 1, 2));
  ordered_json c{{"score", score}, {"statistics", corpus}, {"bootstrap", bootstrap_json(boot)},
                 {"sentence_mean", mean_json(sent_mean)}};
  ordered_json items = ordered_json::array();
  for (size_t i = 0; i < n; ++i) items.push_back({{"score", sentence[i]}, {"statistics", seg[i]}});
  return dump(ordered_json{{"metric", "chrf"}, {"items", n}, {"corpus", c}, {"per_item", items}});
}

std::string score_squad(const ScoreOptions& o, const std::vector<std::string>& preds, const Items& refs) {
  const size_t n = preds.size();
  const bool em = o.metric == "exact_match";
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) {
    const SquadScore s = squad_score(preds[i], refs[i]);
    v[i] = em ? s.exact_match : s.f1;
  }
  const auto e = stats::mean_with_se(v);
  if (!o.json)
    return fmt::format("{} = {}\n  {} items; SQuAD v1.1 normalisation, max over references, 0-100 scale\n", o.metric,
                       mean_text(e, 100, 2), n);
  ordered_json items = ordered_json::array();
  for (double x : v) items.push_back(em ? ordered_json{{"exact_match", static_cast<int>(x)}} : ordered_json{{"f1", x}});
  ordered_json c = mean_json(e, 100);
  return dump(ordered_json{{"metric", o.metric}, {"items", n}, {"corpus", c}, {"per_item", items}});
}

// ---------------------------------------------------------------- ECE

std::vector<double> read_confidences(const std::string& path) {
  const bool jsonl = ends_with(path, ".jsonl");
  const auto lines = read_lines(path);
  std::vector<double> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const size_t lineno = i + 1;
    double v = 0;
    if (jsonl) {
      const auto j = parse_json_line(path, lineno, lines[i]);
      if (!j.is_number()) fail_file(path, fmt::format("line {}: expected a number (a confidence in [0, 1])", lineno));
      v = j.get<double>();
    } else {
      const std::string& s = lines[i];
      char* end = nullptr;
      errno = 0;
      v = std::strtod(s.c_str(), &end);
      while (end && (*end == ' ' || *end == '\t')) ++end;
      if (s.empty() || end == s.c_str() || *end != '\0' || errno == ERANGE)
        fail_file(path, fmt::format("line {}: expected a confidence in [0, 1]", lineno));
    }
    if (!(v >= 0.0 && v <= 1.0)) fail_file(path, fmt::format("line {}: confidence {} is outside [0, 1]", lineno, v));
    out.push_back(v);
  }
  return out;
}

std::vector<int> read_labels(const std::string& path) {
  const bool jsonl = ends_with(path, ".jsonl");
  const auto lines = read_lines(path);
  std::vector<int> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const size_t lineno = i + 1;
    int v = -1;
    if (jsonl) {
      const auto j = parse_json_line(path, lineno, lines[i]);
      if (j.is_boolean()) v = j.get<bool>() ? 1 : 0;
      else if (j.is_number_integer() && (j.get<int64_t>() == 0 || j.get<int64_t>() == 1)) v = static_cast<int>(j.get<int64_t>());
    } else {
      std::string s = lines[i];
      s.erase(0, s.find_first_not_of(" \t"));
      s.erase(s.find_last_not_of(" \t") + 1);
      if (s == "0" || s == "false") v = 0;
      if (s == "1" || s == "true") v = 1;
    }
    if (v < 0) fail_file(path, fmt::format("line {}: expected a correctness label 0 or 1", lineno));
    out.push_back(v);
  }
  return out;
}

std::string score_ece(const ScoreOptions& o) {
  if (o.ref_paths.size() != 1) fail("ece takes exactly one --ref file (the correctness labels)");
  if (o.bins < 1) fail("--bins must be at least 1");
  const auto conf = read_confidences(o.pred_path);
  const auto labels = read_labels(o.ref_paths[0]);
  if (conf.empty()) fail_file(o.pred_path, "no items");
  if (labels.size() != conf.size())
    fail_file(o.ref_paths[0], fmt::format("has {} items but {} has {} (no {} for line {})", labels.size(), o.pred_path,
                                          conf.size(), labels.size() < conf.size() ? "label" : "confidence",
                                          std::min(labels.size(), conf.size()) + 1));
  const EceResult r = expected_calibration_error(conf, labels, o.bins);
  // Bootstrap: the same binning with item weights.
  auto weighted_ece = [&](std::span<const uint32_t> w) {
    const auto nb = static_cast<size_t>(o.bins);
    std::vector<double> cnt(nb, 0), cor(nb, 0), cs(nb, 0);
    double total = 0;
    for (size_t i = 0; i < conf.size(); ++i) {
      const auto b = static_cast<size_t>(r.bin_indices[i]);
      cnt[b] += w[i];
      cor[b] += w[i] * labels[i];
      cs[b] += w[i] * conf[i];
      total += w[i];
    }
    double ece = 0;
    for (size_t b = 0; b < nb; ++b)
      if (cnt[b] > 0) ece += (cnt[b] / total) * std::fabs(cor[b] / cnt[b] - cs[b] / cnt[b]);
    return ece;
  };
  const auto boot = stats::bootstrap(conf.size(), weighted_ece, boot_options(o));
  if (!o.json) {
    std::string t = fmt::format("ECE = {:.4f}  ({})\n  MCE = {:.4f}, accuracy = {:.4f}, mean confidence = {:.4f}, "
                                "{} items, {} equal-width bins\n",
                                r.ece, boot_text(boot, 4), r.mce, r.accuracy, r.mean_confidence, conf.size(), o.bins);
    t += fmt::format("  {:>5} {:<13} {:>7} {:>9} {:>10} {:>8}\n", "bin", "range", "count", "accuracy", "confidence", "gap");
    for (const EceBin& b : r.bins) {
      const std::string range = fmt::format("[{:.2f}, {:.2f}{}", b.lower, b.upper, b.index == o.bins - 1 ? "]" : ")");
      if (b.count == 0)
        t += fmt::format("  {:>5} {:<13} {:>7}\n", b.index, range, 0);
      else
        t += fmt::format("  {:>5} {:<13} {:>7} {:>9.4f} {:>10.4f} {:>8.4f}\n", b.index, range, b.count, *b.accuracy,
                         *b.mean_confidence, *b.abs_gap);
    }
    return t;
  }
  ordered_json bins = ordered_json::array();
  for (const EceBin& b : r.bins) {
    ordered_json jb{{"index", b.index}, {"lower", b.lower}, {"upper", b.upper}, {"count", b.count}, {"correct", b.correct}};
    jb["accuracy"] = b.accuracy ? ordered_json(*b.accuracy) : ordered_json(nullptr);
    jb["mean_confidence"] = b.mean_confidence ? ordered_json(*b.mean_confidence) : ordered_json(nullptr);
    jb["abs_gap"] = b.abs_gap ? ordered_json(*b.abs_gap) : ordered_json(nullptr);
    bins.push_back(std::move(jb));
  }
  ordered_json c{{"ece", r.ece},         {"mce", r.mce},   {"accuracy", r.accuracy},
                 {"mean_confidence", r.mean_confidence}, {"n_bins", o.bins}, {"bootstrap", bootstrap_json(boot)},
                 {"bins", bins}};
  ordered_json items = ordered_json::array();
  for (size_t i = 0; i < conf.size(); ++i)
    items.push_back({{"confidence", conf[i]}, {"correct", labels[i]}, {"bin", r.bin_indices[i]}});
  return dump(ordered_json{{"metric", "ece"}, {"items", conf.size()}, {"corpus", c}, {"per_item", items}});
}

}  // namespace

const std::vector<std::string>& score_metrics() {
  static const std::vector<std::string> names = {"rouge", "bleu", "chrf", "exact_match", "f1", "ece"};
  return names;
}

Items read_score_file(const std::string& path, bool allow_lists) {
  const auto lines = read_lines(path);
  Items items;
  items.reserve(lines.size());
  if (!ends_with(path, ".jsonl")) {
    for (const auto& l : lines) items.push_back({l});
    return items;
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    const size_t lineno = i + 1;
    const auto j = parse_json_line(path, lineno, lines[i]);
    if (j.is_string()) {
      items.push_back({j.get<std::string>()});
      continue;
    }
    const bool ok = allow_lists && j.is_array() && !j.empty() &&
                    std::all_of(j.begin(), j.end(), [](const nlohmann::json& x) { return x.is_string(); });
    if (!ok)
      fail_file(path, fmt::format("line {}: expected {}", lineno,
                                  allow_lists ? "a JSON string or a non-empty list of strings" : "a JSON string"));
    items.push_back(j.get<std::vector<std::string>>());
  }
  return items;
}

std::string run_score(const ScoreOptions& o) {
  const auto& names = score_metrics();
  if (std::find(names.begin(), names.end(), o.metric) == names.end())
    fail(fmt::format("unknown metric '{}' (expected rouge, bleu, chrf, exact_match, f1 or ece)", o.metric));
  if (o.ref_paths.empty()) fail("no --ref file given");
  if (o.stem && o.metric != "rouge") fail("--stem applies only to rouge");
  if (o.bootstrap_samples < 2) fail("--bootstrap must be at least 2");
  if (o.metric == "ece") return score_ece(o);

  const Items pred_items = read_score_file(o.pred_path, false);
  std::vector<std::string> preds;
  preds.reserve(pred_items.size());
  for (const auto& p : pred_items) preds.push_back(p.front());
  if (preds.empty()) fail_file(o.pred_path, "no items");
  Items refs(preds.size());
  for (const std::string& path : o.ref_paths) {
    Items r = read_score_file(path, true);
    if (r.size() != preds.size())
      fail_file(path, fmt::format("has {} items but {} has {} (no {} for line {})", r.size(), o.pred_path, preds.size(),
                                  r.size() < preds.size() ? "reference" : "prediction",
                                  std::min(r.size(), preds.size()) + 1));
    for (size_t i = 0; i < r.size(); ++i)
      for (auto& s : r[i]) refs[i].push_back(std::move(s));
  }
  if (o.metric == "rouge") return score_rouge(o, preds, refs);
  if (o.metric == "bleu") return score_bleu(o, preds, refs);
  if (o.metric == "chrf") return score_chrf(o, preds, refs);
  return score_squad(o, preds, refs);
}

}  // namespace qeval::eval
