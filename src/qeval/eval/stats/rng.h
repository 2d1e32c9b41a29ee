#pragma once
// Deterministic random numbers for resampling: xoshiro256** seeded through splitmix64 (both
// public-domain algorithms by Blackman and Vigna). Unlike std::uniform_int_distribution, every
// draw is specified here, so a seed gives the same resamples on every platform and compiler.
#include <cstdint>

namespace qeval::eval::stats {

class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  uint64_t below(uint64_t n);  // uniform in [0, n), n > 0, unbiased (rejection)
  double uniform();            // uniform in [0, 1), 53 random bits
  double normal();             // standard normal (Marsaglia's polar method)
  bool bernoulli(double p) { return uniform() < p; }

 private:
  uint64_t s_[4];
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace qeval::eval::stats
