#pragma once
// Internal: loops over the R output rows of a SIMD kernel must be unrolled so that GCC keeps the
// rows' accumulators and tables in registers; -O2 leaves them rolled, with the arrays on the
// stack (one store-to-load round trip per chunk or group).
#define QEVAL_UNROLL_ROWS _Pragma("GCC unroll 4")
