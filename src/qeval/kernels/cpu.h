#pragma once
// Run-time choice of the instruction set for the packed kernels.
//  Avx512: AVX-512 F + BW + VL with F16C and FMA (Zen 4, Ice Lake and later).
//  Avx2:   AVX2 + FMA + F16C (Haswell / Zen 1 and later).
//  Scalar: portable C++ (any CPU).
// QEVAL_ISA=scalar|avx2|avx512 in the environment caps the choice (A/B measurements, tests of
// the slower paths on a fast CPU); a request above what the CPU has is lowered to what it has.
#include <cstdint>

namespace qeval::kernels {

enum class Isa : uint8_t { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"
bool isa_available(Isa isa);    // whether this CPU runs it
Isa best_isa();                 // the best available, capped by QEVAL_ISA (read once)

// AVX-512 VNNI (vpdpbusd) for the integer-activation kernels (kernels/int8_activation.h): the
// CPU has it and QEVAL_ISA does not cap below avx512.
bool has_avx512_vnni();

}  // namespace qeval::kernels
