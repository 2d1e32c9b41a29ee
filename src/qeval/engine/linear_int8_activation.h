#pragma once
// Linear layers whose input is quantized per token: the activation part ("a8") of a packed
// directory's spec (quant/export.h), applied inside the layer instead of by a simulation hook.
//
// quant::load_packed_model marks every linear weight of such a model (Tensor::input_quant_bits,
// only for dynamic per-token symmetric round-to-nearest activations without perturbation:
// exactly what quant::ActivationQuantHooks simulates for the in-memory spec), and make_linear
// wraps the layer's weights:
//  - packed Int8 / Int4 weights that kernels::int_gemv_supported accepts (no outliers) run the
//    integer-activation kernels (kernels/int8_activation.h) for any number of input rows
//    (decode, batched decode, prefill): each row is quantized to int8 codes and multiplied in
//    integers ("w4g128a8/avx512-vnni"), as a GEMV split over the pool by output features (one
//    row) or per row over cached weight tiles (several rows: weights read once).
//  - any other weights (the float lm head, dense fallbacks, weights with outliers (CSR),
//    ggml-compatible mode, QEVAL_KERNELS=dense) keep their kernel and get the input
//    fake-quantized first, with the same quantizer ("dense-f32+a8"; with outliers
//    "w8+outliers/avx512+a8").
// Both equal the simulated model (hook + dequantized weights) up to float rounding: the codes and
// scale are the hook's bit for bit, so only the summation differs (int8_activation.h's bound).
// An ActivationQuantHooks installed as well (a spec given on top of the packed model) is
// harmless: quantizing its fake-quantized rows again gives the same codes.
#include <memory>

#include "qeval/engine/linear.h"
#include "qeval/io/tensor.h"

namespace qeval {

// `weights`, as make_linear built them for `weight`, with the input quantization weight asks for
// (returned unchanged when input_quant_bits is 0). integer_kernels: the integer path may be used
// (false in ggml-compatible mode and with QEVAL_KERNELS=dense).
std::unique_ptr<LinearWeights> make_input_quantized_weights(const Tensor& weight, std::unique_ptr<LinearWeights> weights,
                                                            bool integer_kernels);

}  // namespace qeval
