#pragma once
// What an evaluation task asks of a model, and the interface a model implements to answer.
//
// Three kinds of request, as in lm-evaluation-harness:
//   loglikelihood          log P(continuation | context): the sum of the log-probabilities of the
//                          continuation's tokens, whether every one of them is the argmax
//                          (greedy) token, and how many tokens the continuation has. A
//                          multiple_choice doc sends one such request per choice; the requests of
//                          one doc share their context (byte-identical), so an engine can compute
//                          the context once.
//   loglikelihood_rolling  log P(continuation) of a whole text with no context (context is
//                          empty; the engine scores `continuation` from the start of a sequence,
//                          in windows when it is longer than the model's context).
//   generate_until         greedy continuation of `context`, stopped at the first of the `until`
//                          strings (which is not part of the answer) or after max_gen_toks tokens.
// Results come back in the order of the requests.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qeval::eval::task {

enum class RequestType { loglikelihood, loglikelihood_rolling, generate_until };

const char* request_type_name(RequestType t);

struct Request {
  RequestType type = RequestType::loglikelihood;
  std::string context;
  std::string continuation;         // loglikelihood: scored text (starts with the target delimiter)
  std::vector<std::string> until;   // generate_until: stop strings
  int max_gen_toks = 0;             // generate_until
  size_t doc = 0;                   // index of the prepared doc (PreparedTask::docs) it belongs to
  int choice = -1;                  // multiple_choice: index of the choice; -1 otherwise
  int turn = 0;                     // generate_until: 0-based conversation turn (mt_bench has 2)
};

struct LoglikelihoodResult {
  double logprob = 0;      // sum of the continuation's token log-probabilities (natural log)
  bool is_greedy = false;  // every continuation token was the most likely one
  int64_t n_tokens = 0;    // continuation tokens
};

struct RollingResult {
  double logprob = 0;      // sum over every token of the text (natural log)
  int64_t n_tokens = 0;    // tokens scored
};

// Implemented by the inference engine (and by fakes in tests).
class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  virtual std::vector<LoglikelihoodResult> loglikelihood(const std::vector<Request>& requests) = 0;
  virtual std::vector<RollingResult> loglikelihood_rolling(const std::vector<Request>& requests) = 0;
  virtual std::vector<std::string> generate_until(const std::vector<Request>& requests) = 0;
};

}  // namespace qeval::eval::task
