// The core's threads: one pool, the thread count that governs it, and how work is split into
// pieces. Every split comes from the size of the work alone (never from the thread count), or,
// for elementwise loops, does not change the result: the same bits on any number of threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace steepest {

// One setting governs the core's thread pool, which runs its parallel loops and the tiles of
// large products (OpenBLAS itself is kept at one thread). Throws std::invalid_argument below 1.
void set_num_threads(int n);
int get_num_threads();

// ---------------------------------------------------------------------------------------------
// The pool.
//
// run_tasks(n, f) runs f(0) .. f(n - 1), each exactly once. The calling thread claims tasks
// itself, one at a time, while up to get_num_threads() - 1 workers claim the rest: the caller
// never waits for a worker that has not started (a descheduled worker on a busy machine costs
// nothing), only for tasks already claimed to finish. So 2 threads are never much slower than
// 1, whatever the machine's load. The tasks must not depend on which thread runs them.
//
// One pool per process, started on first use. Workers spin briefly after a job, then sleep.
// A second caller arriving while a job runs (several Python threads predicting at once), and
// any call made from inside a task, runs its tasks alone, on its own thread.

using TaskFn = void (*)(void* ctx, int64_t task);

// Runs fn(ctx, 0) .. fn(ctx, n - 1) on the pool (see above); returns when all have finished.
void run_tasks(int64_t n, TaskFn fn, void* ctx);

template <class F>
void run_tasks(int64_t n, F& f) {
  run_tasks(n, [](void* ctx, int64_t i) { (*static_cast<F*>(ctx))(i); }, &f);
}

// Scratch memory for kernels that pack their operands (gemm_kernels.cpp): kThreadScratchBytes
// per thread, 64-byte aligned, kept for the thread's lifetime. A pool worker allocates its own
// when it starts, any other thread on its first call, so a steady-state step allocates nothing.
constexpr size_t kThreadScratchBytes = size_t(576) << 10;
void* thread_scratch();

// ---------------------------------------------------------------------------------------------
// Splitting work.

// [lo, hi) of piece t when [0, n) is split in `pieces` contiguous pieces of a multiple of 16
// (the last may be shorter or empty): the split of gemm's tiles, row_tiles and for_chunks.
inline void tile_range(int64_t t, int64_t pieces, int64_t n, int64_t* lo, int64_t* hi) {
  const int64_t step = ((n + pieces - 1) / pieces + 15) / 16 * 16;
  *lo = std::min(n, t * step);
  *hi = std::min(n, *lo + step);
}

// The number of pieces for_chunks splits n elements of `cost` cheap operations each into:
// 1 (no threads) below a threshold of total work or on one thread.
int64_t chunks_for(int64_t n, int64_t cost);

// Runs f(lo, hi) over [0, n) split in contiguous pieces (multiples of 16 elements: whole cache
// lines) on the thread pool when n * cost cheap operations are worth it, else f(0, n) here.
// For elementwise loops, whose results do not depend on the split.
template <class F>
void for_chunks(int64_t n, int64_t cost, F&& f) {
  const int64_t chunks = chunks_for(n, cost);
  if (chunks <= 1) {
    if (n > 0) f(int64_t(0), n);
    return;
  }
  auto task = [&](int64_t c) {
    int64_t lo, hi;
    tile_range(c, chunks, n, &lo, &hi);
    if (lo < hi) f(lo, hi);
  };
  run_tasks(chunks, task);
}

}  // namespace steepest
