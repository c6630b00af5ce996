// Runtime SIMD dispatch for the hot elementwise loops: GCC compiles a function marked
// STEEPEST_CLONES three times (AVX-512, AVX2 and baseline x86-64) and picks one when the
// library loads, so a wheel runs on any x86-64 and still uses 512- or 256-bit vectors where
// they exist. The core is built with -ffp-contract=off (no multiply-add contraction) and the
// reductions have fixed lanes, so every version gives bitwise-identical results.
// ThreadSanitizer instruments the ifunc resolvers, which run before its runtime is up: no
// dispatch in such builds.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && \
    !defined(STEEPEST_NO_DISPATCH) && !defined(__SANITIZE_THREAD__)
#define STEEPEST_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define STEEPEST_CLONES __attribute__((noinline))
#endif
