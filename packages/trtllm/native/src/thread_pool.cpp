#include "thread_pool.hpp"

namespace trtd {

ThreadPool::ThreadPool(int threads) : parts_(threads < 1 ? 1 : threads) {
    for (int i = 1; i < parts_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    start_cv_.notify_all();
    for (auto & t : workers_) t.join();
}

void ThreadPool::parallel_for(int n, const std::function<void(int, int)> & fn) {
    const int parts = size();
    if (parts == 1 || n < 2) {
        if (n > 0) fn(0, n);
        return;
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        job_ = &fn;
        job_n_ = n;
        pending_ = parts - 1;
        ++generation_;
    }
    start_cv_.notify_all();
    fn(0, n / parts);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    job_ = nullptr;
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    const int parts = size();
    while (true) {
        const std::function<void(int, int)> * job;
        int n;
        {
            std::unique_lock<std::mutex> lk(mu_);
            start_cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            job = job_;
            n = job_n_;
        }
        const int begin = int(int64_t(n) * index / parts), end = int(int64_t(n) * (index + 1) / parts);
        if (begin < end) (*job)(begin, end);
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (--pending_ == 0) done_cv_.notify_one();
        }
    }
}

}  // namespace trtd
