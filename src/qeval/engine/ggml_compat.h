#pragma once
// Linear-layer formats that reproduce llama.cpp's CPU arithmetic (x86, AVX2/AVX-512 build) for
// the weight types where it does not multiply in float32 (see linear.h):
//
//  "ggml-q8-dot"  Q4_0 / Q5_0 / Q8_0 weights (activations to Q8_0) and Q4_1 / Q5_1 weights
//                 (activations to Q8_1). Weights are kept as their integer codes plus F16
//                 scales (and minima); the activation row is quantized per 32-block as ggml's x86
//                 quantize_row_q8_0/q8_1 does (d = amax/127 stored as F16, x*127/amax rounded
//                 half to even; Q8_1 adds s = F16(d*sum q)). Each dot product sums the exact
//                 integer products of a block in 8 lanes of 4 consecutive elements, accumulates
//                 lane-wise with fused multiply-add by d_w*d_a, and reduces the 8 lanes in
//                 ggml's hsum_float_8 order; Q8_1 adds sum(m_w * s_a) afterwards. This is the
//                 order of both ggml_vec_dot_q*_q8_* and llamafile's tinyBLAS_Q0_AVX.
//  "ggml-f16-dot" F16 weights: activations rounded to F16; rows whose length is a multiple of
//                 16 use tinyBLAS's single 16-lane FMA accumulator and _mm512_reduce_add_ps's
//                 tree; other lengths use ggml_vec_dot_f16's four 16-lane accumulators, their
//                 reduction, and a double-precision tail.
//
// Float summation order then matches llama.cpp's, so activation-quantization rounding flips
// (which amplify any float difference) become rare. What still differs: ggml's SIMD expf /
// SiLU approximations and its attention summation order; a last-bit difference there can flip
// an F16 / Q8 rounding downstream (F16 files are most exposed: every attention output is
// rounded to F16). Speed is secondary: these formats exist for parity measurements.
#include <memory>

#include "qeval/engine/linear.h"

namespace qeval {

// True when a ggml-exact format exists for this weight type.
bool has_ggml_exact_format(DType type);
// Builds it from a file tensor [out, in] (throws for other types).
std::unique_ptr<LinearWeights> make_ggml_exact_weights(const Tensor& weight);

}  // namespace qeval
