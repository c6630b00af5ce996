#include "steepest/threads.hpp"

#include <cblas.h>
#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define STEEPEST_PAUSE() _mm_pause()
#else
#define STEEPEST_PAUSE() std::this_thread::yield()
#endif

namespace steepest {

namespace {

// The job protocol is a sequence lock on `epoch`: odd while the caller writes the job, even
// once it is published. A worker announces itself in `active` and then re-reads `epoch`; the
// caller waits for `active` to drop to 0 before writing a new job. All atomics are sequentially
// consistent (the two sides' store-then-load pairs need it).
class Pool {
 public:
  ~Pool() { stop(); }

  // In a child process after fork(): the workers did not survive it. Forget them without
  // joining (their handles are leaked on purpose) and reset the locks and the protocol, so the
  // child can train (and start its own workers) as if fresh.
  void after_fork() {
    new (&workers_) std::vector<std::thread>();
    new (&call_) std::mutex();
    new (&sleep_) std::mutex();
    new (&wake_) std::condition_variable();
    active_.store(0);
    sleepers_.store(0);
    quit_.store(false);
    if (epoch_.load() & 1) epoch_.fetch_add(1);
    in_task_ = false;
  }

  void resize(int threads) {
    std::lock_guard<std::mutex> guard(call_);
    stop();
    threads_ = threads < 1 ? 1 : threads;
  }

  void run(int64_t n, TaskFn fn, void* ctx) {
    std::unique_lock<std::mutex> guard(call_, std::try_to_lock);
    if (n <= 1 || threads_ <= 1 || in_task_ || !guard.owns_lock()) {
      for (int64_t i = 0; i < n; ++i) fn(ctx, i);
      return;
    }
    if (workers_.empty()) start();
    // Write the job (epoch odd), once no worker is still reading the previous one.
    epoch_.fetch_add(1);
    while (active_.load() != 0) STEEPEST_PAUSE();
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    done_.store(0);
    next_.store(0);
    epoch_.fetch_add(1);  // published
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(sleep_);
      wake_.notify_all();
    }
    in_task_ = true;
    int64_t mine = 0;
    for (int64_t i; (i = next_.fetch_add(1)) < n;) {
      fn(ctx, i);
      ++mine;
    }
    in_task_ = false;
    if (done_.fetch_add(mine) + mine != n) {
      while (done_.load() != n) STEEPEST_PAUSE();  // tasks a worker is finishing
    }
  }

 private:
  void start() {
    quit_.store(false);
    for (int t = 1; t < threads_; ++t) workers_.emplace_back([this] { work(); });
  }

  void stop() {
    if (workers_.empty()) return;
    {
      std::lock_guard<std::mutex> lock(sleep_);
      quit_.store(true);
      wake_.notify_all();
    }
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  void work() {
    thread_scratch();  // allocated now, not in the middle of some later step
    in_task_ = true;  // a task that calls run_tasks runs its tasks itself
    uint64_t seen = epoch_.load();
    if (seen & 1) --seen;
    for (;;) {
      uint64_t e = 0;
      // Spin a little (the next job usually follows within microseconds), then sleep.
      for (int spin = 0; spin < 4000; ++spin) {
        e = epoch_.load();
        if ((e != seen && !(e & 1)) || quit_.load()) break;
        STEEPEST_PAUSE();
      }
      if (e == seen || (e & 1)) {
        std::unique_lock<std::mutex> lock(sleep_);
        sleepers_.fetch_add(1);
        wake_.wait(lock, [&] {
          e = epoch_.load();
          return quit_.load() || (e != seen && !(e & 1));
        });
        sleepers_.fetch_sub(1);
      }
      if (quit_.load()) return;
      active_.fetch_add(1);
      if (epoch_.load() != e) {  // the caller started writing another job: retry
        active_.fetch_sub(1);
        continue;
      }
      seen = e;
      const int64_t n = n_;
      const TaskFn fn = fn_;
      void* const ctx = ctx_;
      int64_t mine = 0;
      for (int64_t i; (i = next_.fetch_add(1)) < n;) {
        fn(ctx, i);
        ++mine;
      }
      if (mine) done_.fetch_add(mine);
      active_.fetch_sub(1);
    }
  }

  std::mutex call_;  // one job at a time
  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> active_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> quit_{false};
  std::atomic<int64_t> next_{0}, done_{0};
  int64_t n_ = 0;
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::mutex sleep_;
  std::condition_variable wake_;
  static thread_local bool in_task_;
};

thread_local bool Pool::in_task_ = false;

Pool& pool() {
  static Pool* p = [] {
    pthread_atfork(nullptr, nullptr, [] { pool().after_fork(); });
    return new Pool();  // never destroyed: workers may outlive static destructors
  }();
  return *p;
}

int g_num_threads = 1;

// Below this many cheap operations a loop stays on one thread: handing out work costs more
// than it saves. Above, pieces of about kParallelThreshold / 2 operations.
constexpr int64_t kParallelThreshold = int64_t(1) << 16;

}  // namespace

void run_tasks(int64_t n, TaskFn fn, void* ctx) { pool().run(n, fn, ctx); }

void* thread_scratch() {
  struct Scratch {
    void* data = std::aligned_alloc(64, kThreadScratchBytes);
    ~Scratch() { std::free(data); }
  };
  thread_local Scratch scratch;
  if (!scratch.data) throw std::bad_alloc();
  return scratch.data;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("number of threads must be >= 1");
  g_num_threads = n;
  pool().resize(n);
  // OpenBLAS itself always runs on one thread: the core spreads tiles of a product over its
  // own pool instead (one thread pool, and the same bits on any number of threads).
  scipy_openblas_set_num_threads(1);
}

int get_num_threads() { return g_num_threads; }

int64_t chunks_for(int64_t n, int64_t cost) {
  const int64_t work = n * cost;
  if (g_num_threads <= 1 || work < kParallelThreshold) return 1;
  return std::min<int64_t>(64, std::max<int64_t>(2, work / (kParallelThreshold / 2)));
}

}  // namespace steepest
