// `qeval score`: file parsing, errors, and that the reported numbers are the metrics' own.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "qeval/eval/metrics/bleu.h"
#include "qeval/eval/metrics/chrf.h"
#include "qeval/eval/metrics/ece.h"
#include "qeval/eval/metrics/rouge.h"
#include "qeval/eval/metrics/squad.h"
#include "qeval/eval/score_command.h"
#include "qeval/util/error.h"
#include "test_support.h"

namespace qeval::eval {
namespace {

using test::TempDir;
using test::write_bytes;

std::string error_of(const ScoreOptions& o) {
  try {
    run_score(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

ScoreOptions opts(const std::string& metric, const std::string& pred, const std::string& ref, bool json = true) {
  ScoreOptions o;
  o.metric = metric;
  o.pred_path = pred;
  o.ref_paths = {ref};
  o.json = json;
  o.bootstrap_samples = 200;
  return o;
}

TEST(ScoreCommand, RougeFromPlainTextMatchesTheMetric) {
  TempDir d;
  write_bytes(d.file("pred.txt"), "the cat sat on the mat\r\nrunning dogs\n");
  write_bytes(d.file("ref.txt"), "the cat was on the mat\nthe dog runs\n");
  ScoreOptions o = opts("rouge", d.file("pred.txt"), d.file("ref.txt"));
  o.stem = true;
  const auto j = nlohmann::json::parse(run_score(o));
  ASSERT_EQ(j.at("items"), 2);
  const RougeScores a = rouge("the cat sat on the mat", "the cat was on the mat", true);
  const RougeScores b = rouge("running dogs", "the dog runs", true);
  EXPECT_DOUBLE_EQ(j["per_item"][0]["rougeL"]["fmeasure"].get<double>(), a.rougeL.fmeasure);
  EXPECT_DOUBLE_EQ(j["per_item"][1]["rouge1"]["recall"].get<double>(), b.rouge1.recall);
  EXPECT_DOUBLE_EQ(j["corpus"]["rouge1"]["fmeasure"]["mean"].get<double>(), (a.rouge1.fmeasure + b.rouge1.fmeasure) / 2);
  EXPECT_GT(j["corpus"]["rouge1"]["fmeasure"]["se"].get<double>(), 0);
  o.json = false;
  EXPECT_NE(run_score(o).find("rougeLsum"), std::string::npos);
}

TEST(ScoreCommand, BleuWithReferenceListsAndSeveralFiles) {
  TempDir d;
  write_bytes(d.file("pred.jsonl"), "\"The cat sat on the mat.\"\n\"A dog barked loudly.\"\n\"\"\n");
  write_bytes(d.file("ref.jsonl"),
              "[\"The cat sat on a mat.\", \"A cat was sitting on the mat.\"]\n\"The dog barked.\"\n\"Nothing.\"\n");
  write_bytes(d.file("ref2.txt"), "the cat is on the mat\nA dog barked loudly all night.\nNothing here.\n");
  ScoreOptions o = opts("bleu", d.file("pred.jsonl"), d.file("ref.jsonl"));
  o.ref_paths.push_back(d.file("ref2.txt"));
  const auto j = nlohmann::json::parse(run_score(o));
  const std::vector<std::string> hyps = {"The cat sat on the mat.", "A dog barked loudly.", ""};
  const std::vector<std::vector<std::string>> refs = {
      {"The cat sat on a mat.", "A cat was sitting on the mat.", "the cat is on the mat"},
      {"The dog barked.", "A dog barked loudly all night."},
      {"Nothing.", "Nothing here."}};
  const BleuScore c = corpus_bleu(hyps, refs);
  EXPECT_DOUBLE_EQ(j["corpus"]["score"].get<double>(), c.score);
  EXPECT_EQ(j["corpus"]["ref_len"].get<int64_t>(), c.ref_len);
  EXPECT_EQ(j["corpus"]["counts"].get<std::vector<int64_t>>(), std::vector<int64_t>(c.counts.begin(), c.counts.end()));
  const BleuScore s1 = sentence_bleu(hyps[1], refs[1]);
  EXPECT_DOUBLE_EQ(j["per_item"][1]["score"].get<double>(), s1.score);
  EXPECT_DOUBLE_EQ(j["per_item"][1]["bp"].get<double>(), s1.bp);
  const auto ci = j["corpus"]["bootstrap"]["ci95"].get<std::vector<double>>();
  EXPECT_LE(ci[0], ci[1]);
  // Deterministic for a seed.
  EXPECT_EQ(run_score(o), run_score(o));
}

TEST(ScoreCommand, ChrfAndSquad) {
  TempDir d;
  write_bytes(d.file("pred.txt"), "Denver Broncos\nthe Nile\n1,000");
  write_bytes(d.file("ref.jsonl"), "[\"Denver Broncos\", \"Broncos\"]\n[\"Nile River\", \"The Nile\"]\n\"1000\"\n");
  auto j = nlohmann::json::parse(run_score(opts("exact_match", d.file("pred.txt"), d.file("ref.jsonl"))));
  EXPECT_EQ(j["items"], 3);  // no final newline: the last line is still an item
  EXPECT_DOUBLE_EQ(j["corpus"]["mean"].get<double>(), 100.0);
  j = nlohmann::json::parse(run_score(opts("f1", d.file("pred.txt"), d.file("ref.jsonl"))));
  EXPECT_DOUBLE_EQ(j["per_item"][1]["f1"].get<double>(), squad_score("the Nile", {"Nile River", "The Nile"}).f1);
  j = nlohmann::json::parse(run_score(opts("chrf", d.file("pred.txt"), d.file("ref.jsonl"))));
  EXPECT_DOUBLE_EQ(j["per_item"][0]["score"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(j["corpus"]["score"].get<double>(),
                   corpus_chrf({"Denver Broncos", "the Nile", "1,000"},
                               {{"Denver Broncos", "Broncos"}, {"Nile River", "The Nile"}, {"1000"}})
                       .score);
}

TEST(ScoreCommand, Ece) {
  TempDir d;
  write_bytes(d.file("conf.txt"), "0.25\n0.25\n0.95\n");
  write_bytes(d.file("correct.jsonl"), "false\n1\ntrue\n");
  const auto j = nlohmann::json::parse(run_score(opts("ece", d.file("conf.txt"), d.file("correct.jsonl"))));
  const EceResult r = expected_calibration_error({0.25, 0.25, 0.95}, {0, 1, 1});
  EXPECT_DOUBLE_EQ(j["corpus"]["ece"].get<double>(), r.ece);
  EXPECT_EQ(j["corpus"]["bins"].size(), 10u);
  EXPECT_EQ(j["per_item"][2]["bin"], 9);
  write_bytes(d.file("bad.txt"), "0.5\n1.5\n0.1\n");
  EXPECT_EQ(error_of(opts("ece", d.file("bad.txt"), d.file("correct.jsonl"))),
            d.file("bad.txt") + ": line 2: confidence 1.5 is outside [0, 1]");
  write_bytes(d.file("labels.txt"), "1\n2\n0\n");
  EXPECT_EQ(error_of(opts("ece", d.file("conf.txt"), d.file("labels.txt"))),
            d.file("labels.txt") + ": line 2: expected a correctness label 0 or 1");
}

TEST(ScoreCommand, LineCountMismatchNamesFileAndLine) {
  TempDir d;
  write_bytes(d.file("pred.txt"), "a\nb\nc\n");
  write_bytes(d.file("ref.txt"), "a\nb\n");
  EXPECT_EQ(error_of(opts("bleu", d.file("pred.txt"), d.file("ref.txt"))),
            d.file("ref.txt") + ": has 2 items but " + d.file("pred.txt") + " has 3 (no reference for line 3)");
  write_bytes(d.file("ref.txt"), "a\nb\nc\nd\n");
  EXPECT_EQ(error_of(opts("rouge", d.file("pred.txt"), d.file("ref.txt"))),
            d.file("ref.txt") + ": has 4 items but " + d.file("pred.txt") + " has 3 (no prediction for line 4)");
}

TEST(ScoreCommand, BadJsonNamesFileAndLine) {
  TempDir d;
  write_bytes(d.file("pred.txt"), "a\nb\nc\n");
  write_bytes(d.file("ref.jsonl"), "\"a\"\n[\"b\", \n\"c\"\n");
  const std::string e = error_of(opts("chrf", d.file("pred.txt"), d.file("ref.jsonl")));
  EXPECT_EQ(e.rfind(d.file("ref.jsonl") + ": line 2: invalid JSON", 0), 0u) << e;
  write_bytes(d.file("ref.jsonl"), "\"a\"\n\"b\"\n42\n");
  EXPECT_EQ(error_of(opts("chrf", d.file("pred.txt"), d.file("ref.jsonl"))),
            d.file("ref.jsonl") + ": line 3: expected a JSON string or a non-empty list of strings");
  write_bytes(d.file("ref.jsonl"), "\"a\"\n[]\n\"c\"\n");
  EXPECT_NE(error_of(opts("chrf", d.file("pred.txt"), d.file("ref.jsonl"))).find(": line 2: expected"), std::string::npos);
  write_bytes(d.file("ref.jsonl"), "\"a\"\n\n\"c\"\n");
  EXPECT_EQ(error_of(opts("chrf", d.file("pred.txt"), d.file("ref.jsonl"))),
            d.file("ref.jsonl") + ": line 2: empty line (expected one JSON value)");
  write_bytes(d.file("pred.jsonl"), "\"a\"\n[\"b\"]\n\"c\"\n");
  EXPECT_EQ(error_of(opts("chrf", d.file("pred.jsonl"), d.file("pred.txt"))),
            d.file("pred.jsonl") + ": line 2: expected a JSON string");
}

TEST(ScoreCommand, BadUtf8NamesFileAndLine) {
  TempDir d;
  write_bytes(d.file("pred.txt"), "ok\nfine\nbad \xC3(\n");
  write_bytes(d.file("ref.txt"), "ok\nfine\nbad\n");
  EXPECT_EQ(error_of(opts("rouge", d.file("pred.txt"), d.file("ref.txt"))),
            d.file("pred.txt") + ": line 3: invalid UTF-8 at byte 5 of the line");
  write_bytes(d.file("ref.jsonl"), "\"ok\"\n\"\xED\xA0\x80\"\n\"bad\"\n");  // an encoded surrogate
  write_bytes(d.file("pred.txt"), "ok\nfine\nbad\n");
  EXPECT_EQ(error_of(opts("rouge", d.file("pred.txt"), d.file("ref.jsonl"))),
            d.file("ref.jsonl") + ": line 2: invalid UTF-8 at byte 2 of the line");
}

TEST(ScoreCommand, OptionErrors) {
  TempDir d;
  write_bytes(d.file("p.txt"), "a\n");
  EXPECT_EQ(error_of(opts("bleu", d.file("missing.txt"), d.file("p.txt"))).rfind(d.file("missing.txt") + ": cannot open", 0),
            0u);
  ScoreOptions o = opts("bleu", d.file("p.txt"), d.file("p.txt"));
  o.stem = true;
  EXPECT_EQ(error_of(o), "--stem applies only to rouge");
  EXPECT_NE(error_of(opts("meteor", d.file("p.txt"), d.file("p.txt"))).find("unknown metric"), std::string::npos);
  write_bytes(d.file("empty.txt"), "");
  EXPECT_EQ(error_of(opts("bleu", d.file("empty.txt"), d.file("empty.txt"))), d.file("empty.txt") + ": no items");
}

TEST(ScoreCommand, ExecutableExitsWithTwoOnBadInput) {
  TempDir d;
  write_bytes(d.file("pred.txt"), "a\nb\n");
  write_bytes(d.file("ref.jsonl"), "\"a\"\n{oops\n");
  const std::string cmd = std::string(QEVAL_EXE) + " score bleu --pred " + d.file("pred.txt") + " --ref " +
                          d.file("ref.jsonl") + " >" + d.file("out") + " 2>" + d.file("err");
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  const std::string err = test::read_text(d.file("err"));
  EXPECT_EQ(err.rfind("qeval: error: " + d.file("ref.jsonl") + ": line 2: invalid JSON", 0), 0u) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
  write_bytes(d.file("ref.jsonl"), "\"a\"\n\"b\"\n");
  const std::string ok = std::string(QEVAL_EXE) + " score chrf --pred " + d.file("pred.txt") + " --ref " +
                         d.file("ref.jsonl") + " >" + d.file("out") + " 2>" + d.file("err");
  EXPECT_EQ(std::system(ok.c_str()), 0) << test::read_text(d.file("err"));
  EXPECT_EQ(test::read_text(d.file("out")).rfind("chrF2 = 100.00", 0), 0u) << test::read_text(d.file("out"));
}

}  // namespace
}  // namespace qeval::eval
