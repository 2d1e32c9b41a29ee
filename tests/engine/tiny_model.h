#pragma once
// Tiny deterministic models for engine tests. Every weight is a dyadic rational (exact in
// float32 and float64) drawn from splitmix64, so tests/engine/reference/tiny_ref.py can
// rebuild the same model in pure Python and compute reference logits in float64.
#include <cstdint>
#include <string>

#include "qeval/io/model.h"

namespace qeval::test {

// splitmix64 step (state advanced by the golden gamma, then mixed).
uint64_t splitmix64(uint64_t& state);
// FNV-1a 64 of a tensor name, mixed with the seed: the tensor's stream start.
uint64_t tensor_stream(uint64_t seed, const std::string& name);

// Value k / 256 * scale with k uniform in [-256, 256] (scale a power of two).
// Norm weights: 1 + value; biases: value.
Model make_tiny_model(const ModelConfig& cfg, uint64_t seed);

// Configs used by the tests (and by the Python reference).
ModelConfig tiny_config(const std::string& arch);

}  // namespace qeval::test
