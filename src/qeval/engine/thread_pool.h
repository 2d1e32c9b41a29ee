#pragma once
// A small fork-join pool for the engine's kernels (GEMV rows, attention heads). Workers spin
// briefly, then sleep, between jobs; parallel_for does not allocate.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace qeval {

class ThreadPool {
 public:
  // n_threads counts the calling thread: n_threads - 1 workers are started. 0 = hardware
  // concurrency.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end, thread_index) on chunks covering [0, n); chunks are at least
  // `grain` long. thread_index < size(). Returns when every chunk is done.
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    run(n, grain, const_cast<void*>(static_cast<const void*>(&fn)),
        [](void* obj, int64_t b, int64_t e, int t) { (*static_cast<Fn*>(obj))(b, e, t); });
  }

 private:
  using Trampoline = void (*)(void*, int64_t, int64_t, int);
  void run(int64_t n, int64_t grain, void* obj, Trampoline call);
  void worker(int index);
  void work(int index);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> finished_{0};
  std::atomic<int64_t> next_{0};
  bool stop_ = false;
  // the current job
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  void* obj_ = nullptr;
  Trampoline call_ = nullptr;
};

}  // namespace qeval
