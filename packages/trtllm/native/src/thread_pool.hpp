// A fixed pool of compute threads; parallel_for splits a range statically so every element is always
// computed by the same code path (results do not depend on the thread count's timing).
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace trtd {

class ThreadPool {
public:
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool & operator=(const ThreadPool &) = delete;

    int size() const { return parts_; }
    // Runs fn(begin, end) over [0, n) in size() contiguous parts; the caller runs part 0. Not reentrant:
    // one caller at a time (the executor serializes compute with its compute mutex).
    void parallel_for(int n, const std::function<void(int, int)> & fn);

private:
    void worker(int index);
    int parts_ = 1;  // set before any worker starts: workers read it
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable start_cv_, done_cv_;
    const std::function<void(int, int)> * job_ = nullptr;
    int job_n_ = 0;
    uint64_t generation_ = 0;
    int pending_ = 0;
    bool stop_ = false;
};

}  // namespace trtd
