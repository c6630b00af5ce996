// A tiny thread pool for the core's parallel loops and tiled products.
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
#pragma once

#include <cstdint>

namespace steepest {

using TaskFn = void (*)(void* ctx, int64_t task);

// Runs fn(ctx, 0) .. fn(ctx, n - 1) on the pool (see above); returns when all have finished.
void run_tasks(int64_t n, TaskFn fn, void* ctx);

// Stops the workers and sets how many threads (caller included) later jobs use.
void set_pool_threads(int n);

template <class F>
void run_tasks(int64_t n, F& f) {
  run_tasks(n, [](void* ctx, int64_t i) { (*static_cast<F*>(ctx))(i); }, &f);
}

}  // namespace steepest
