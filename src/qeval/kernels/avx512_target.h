#pragma once
// Internal: the function target of the AVX-512 (F/BW/VL + F16C + FMA) kernels
// (kernels_avx512.cpp, kernels_gemm_avx512.cpp; kernels_int_vnni.cpp uses the rest). Include on
// x86-64 with GCC or Clang only.
#include <immintrin.h>

#include "qeval/kernels/unroll_rows.h"

// GCC 12's AVX-512 headers build "undefined" vectors by self-initialization (__m512 __Y = __Y),
// which -Wuninitialized reports at every inlined use; the values are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define QEVAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define QEVAL_AVX512_INLINE inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
