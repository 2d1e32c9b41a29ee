// `qeval score`: text-generation and calibration metrics on prediction / reference files.
// The logic lives in qeval/eval/score_command.cpp; this file only declares the options.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "qeval/eval/score_command.h"

namespace qeval::cli {
namespace {

std::function<int()> setup_score(CLI::App& app) {
  auto opts = std::make_shared<eval::ScoreOptions>();
  app.add_option("metric", opts->metric, "rouge, bleu, chrf, exact_match, f1 (SQuAD) or ece")
      ->required()
      ->check(CLI::IsMember(eval::score_metrics()));
  app.add_option("--pred", opts->pred_path,
                 "Predictions: one per line, or one JSON string per line in a .jsonl file "
                 "(ece: one confidence in [0, 1] per line)")
      ->required();
  app.add_option("--ref", opts->ref_paths,
                 "References, item by item like --pred; in .jsonl a line may hold a list of references; "
                 "repeat --ref to add reference files (ece: one 0/1 correctness label per line)")
      ->required();
  app.add_flag("--json", opts->json, "Print corpus-level and per-item scores as JSON");
  app.add_flag("--stem", opts->stem, "rouge: Porter-stem tokens longer than 3 characters (rouge-score's use_stemmer)");
  app.add_option("--bootstrap", opts->bootstrap_samples, "Bootstrap resamples for bleu, chrf and ece (default 1000)");
  app.add_option("--seed", opts->seed, "Bootstrap seed (default 0)");
  app.add_option("--bins", opts->bins, "ece: number of equal-width confidence bins (default 10)");
  return [opts] {
    const std::string out = eval::run_score(*opts);
    std::fputs(out.c_str(), stdout);
    return 0;
  };
}

}  // namespace

QEVAL_COMMAND("score", "Score predictions against references: ROUGE, BLEU, chrF, SQuAD EM/F1, ECE", setup_score);

}  // namespace qeval::cli
