// Counts every heap allocation of the process (malloc, calloc, realloc, aligned allocations and
// operator new) between start() and stop(): a steady-state training step must make none.
// Sanitizers bring their own malloc, so such builds count nothing (kCounting is false).
#pragma once

#include <cstdint>

namespace steepest::test::allocs {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kCounting = false;
#else
constexpr bool kCounting = true;
#endif

void start();
// The allocations since start().
int64_t stop();

}  // namespace steepest::test::allocs
