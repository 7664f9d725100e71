// Where a batch-1 decode step goes beyond the weight stream, without counters (needs a GPU):
//   1. the read ceiling: a streaming read of 2 GiB, no writes (what a GEMV at batch 1 can reach at best);
//   2. each small-batch GEMM shape of the Llama-3.2-1B and Llama-3.1-8B layers alone, L2-cold (each launch reads another
//      copy of the weights, the copies together over 1 GiB), at every grid cap of --caps (CTAs per SM);
//   3. the layers' GEMMs chained as in a decode step (QKV -> O -> gate/up + SiLU -> down, every layer its own weights,
//      then the lm_head), captured in one CUDA graph and replayed, at each grid cap and each L2 prefetch size of the
//      first rows (--prefetch, bytes; -1 the whole row): the chain's time against the sum of its kernels alone shows
//      what the kernel boundaries cost, and against the weight bytes over the ceiling what is left.
//   trtd_cuda_gemv_bench [--caps 8,4,2] [--prefetch 0,4096,-1] [--reps N] [--shapes 1b,8b] [--skip-alone]
// Prints a line per figure and one JSON object last.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernel_common.cuh"
#include "kernels.cuh"
#include "tests/cuda_check.cuh"

using namespace trtd::cuda;

namespace {

__global__ void fill_k(uint16_t * p, size_t n, uint32_t seed, float scale) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint32_t h = uint32_t(i) * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        const float f = (float(h & 0xffff) / 65535.f - 0.5f) * scale;
        uint32_t u;
        std::memcpy(&u, &f, 4);
        p[i] = uint16_t(u >> 16);
    }
}

__global__ void read_k(const uint4 * p, size_t n, unsigned * sink) {
    uint32_t acc = 0;
    const size_t stride = size_t(gridDim.x) * blockDim.x;
    size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
    for (; i + 7 * stride < n; i += 8 * stride) {
        uint4 v[8];
#pragma unroll
        for (int u = 0; u < 8; ++u)
            asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                         : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w) : "l"(p + i + u * stride));
#pragma unroll
        for (int u = 0; u < 8; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) acc ^= p[i].x ^ p[i].w;
    if (acc == 0x9e3779b9u) *sink = acc;  // keeps the loads
}

uint16_t * alloc_fill(size_t elems, uint32_t seed, float scale) {
    uint16_t * p;
    CK(cudaMalloc(&p, elems * 2));
    fill_k<<<1024, 256>>>(p, elems, seed, scale);
    CK(cudaGetLastError());
    return p;
}

struct Shape {
    const char * name;
    int out, in;
    bool pair;  // gate/up with the SiLU epilogue: out = 2 * inter rows
};

struct Model {
    const char * name;
    int H, I, QKV, layers, vocab;
    std::vector<Shape> shapes() const {
        return {{"qkv", QKV, H, false}, {"o", H, H, false}, {"gate_up", 2 * I, H, true}, {"down", H, I, false}};
    }
};

cudaStream_t stream;

// One GEMM of shape sh at batch 1: w [out][in], x [in], y [out] (f32 when f32).
void launch(const Shape & sh, const void * w, const void * x, void * y, bool f32 = false) {
    const bool ok = sh.pair ? gemv_silu(DType::BF16, w, x, y, sh.out / 2, sh.in, 1, stream) : gemv(DType::BF16, w, x, y, sh.out, sh.in, 1, f32, stream);
    if (!ok) {
        std::printf("gemv refused %s\n", sh.name);
        std::exit(2);
    }
}

float time_ms(int reps, const std::function<void(int)> & body) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < std::min(reps, 8); ++i) body(i);  // warm-up (module load, clocks)
    CK(cudaEventRecord(a, stream));
    for (int i = 0; i < reps; ++i) body(i);
    CK(cudaEventRecord(b, stream));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms / reps;
}

std::vector<int> parse_ints(const char * s) {
    std::vector<int> v;
    for (const char * p = s; *p;) {
        v.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p) ++p;
    }
    return v;
}

}  // namespace

int main(int argc, char ** argv) {
    std::vector<int> caps = {8, 4, 2};
    std::vector<long> prefetch = {0, 4096, -1};  // bytes of each first row prefetched to L2; -1: the whole row
    std::string which = "1b,8b";
    int reps = 200;
    bool alone = true;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--caps" && i + 1 < argc) caps = parse_ints(argv[++i]);
        else if (a == "--prefetch" && i + 1 < argc) {
            prefetch.clear();
            for (int v : parse_ints(argv[++i])) prefetch.push_back(v);
        } else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
        else if (a == "--shapes" && i + 1 < argc) which = argv[++i];
        else if (a == "--skip-alone") alone = false;
        else {
            std::fprintf(stderr, "usage: trtd_cuda_gemv_bench [--caps 8,4,2] [--prefetch 0,4096,-1] [--reps N] [--shapes 1b,8b] [--skip-alone]\n");
            return 2;
        }
    }
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        std::printf("no CUDA device: gemv bench skipped\n");
        return 0;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    std::printf("device %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
    std::string json = std::string("{\"device\": \"") + prop.name + "\"";

    // 1. The read ceiling.
    const size_t big = size_t(2) << 30;
    uint16_t * buf = alloc_fill(big / 2, 1, 1.f);
    unsigned * sink;
    CK(cudaMalloc(&sink, 4));
    const float read_ms = time_ms(20, [&](int) { read_k<<<prop.multiProcessorCount * 8, 256, 0, stream>>>(reinterpret_cast<const uint4 *>(buf), big / 16, sink); });
    const double ceiling = double(big) / (read_ms * 1e-3) / 1e12;
    const float copy_ms = time_ms(10, [&](int) { CK(cudaMemcpyAsync(buf + big / 4, buf, big / 2, cudaMemcpyDeviceToDevice, stream)); });
    const double copy_tbs = double(big) / (copy_ms * 1e-3) / 1e12;  // bytes read + written
    std::printf("read ceiling %.3f TB/s (2 GiB streamed); device copy %.3f TB/s (read + written)\n", ceiling, copy_tbs);
    json += ", \"read_tb_s\": " + std::to_string(ceiling) + ", \"copy_tb_s\": " + std::to_string(copy_tbs);
    CK(cudaFree(buf));

    const Model models[] = {{"1b", 2048, 8192, 3072, 16, 128256}, {"8b", 4096, 14336, 6144, 32, 128256}};
    uint16_t *x = alloc_fill(1 << 16, 7, 1.f), *y = alloc_fill(1 << 16, 8, 0.f);
    float * logits;
    CK(cudaMalloc(&logits, size_t(128256) * 4));
    for (const Model & m : models) {
        if (which.find(m.name) == std::string::npos) continue;
        double layer_alone_ms = 0;
        // 2. Each shape alone, L2-cold, with the first prefetch size of the sweep.
        gemv_prefetch_bytes() = prefetch[0] < 0 ? long(1) << 40 : prefetch[0];
        if (alone) {
            for (const Shape & sh : m.shapes()) {
                const size_t elems = size_t(sh.out) * sh.in, bytes = elems * 2;
                const int copies = int(std::min<size_t>(64, std::max<size_t>(2, ((size_t(1) << 30) + bytes - 1) / bytes)));
                std::vector<uint16_t *> w;
                for (int c = 0; c < copies; ++c) w.push_back(alloc_fill(elems, 100 + c, 0.02f));
                std::printf("%s %-8s %6d x %-6d %7.1f MB:", m.name, sh.name, sh.out, sh.in, bytes / 1e6);
                for (int cap : caps) {
                    small_gemm_ctas_per_sm() = cap;
                    const float ms = time_ms(std::max(reps, copies), [&](int i) { launch(sh, w[i % copies], x, y); });
                    const double tbs = bytes / (ms * 1e-3) / 1e12;
                    std::printf("  cap %d %.2f us %.2f TB/s (%.2f)", cap, ms * 1e3, tbs, tbs / ceiling);
                    json += std::string(", \"") + m.name + "_" + sh.name + "_cap" + std::to_string(cap) + "_us\": " + std::to_string(ms * 1e3);
                }
                small_gemm_ctas_per_sm() = caps[0];
                const float ms = time_ms(std::max(reps, copies), [&](int i) { launch(sh, w[i % copies], x, y); });
                layer_alone_ms += ms;
                std::printf("  (floor %.2f us)\n", bytes / (ceiling * 1e12) * 1e6);
                for (auto * p : w) CK(cudaFree(p));
            }
        }
        // 3. The chain, every layer its own weights, as one graph.
        small_gemm_ctas_per_sm() = caps[0];
        std::vector<std::vector<uint16_t *>> lw(size_t(m.layers));
        size_t chain_bytes = 0;
        for (int l = 0; l < m.layers; ++l)
            for (const Shape & sh : m.shapes()) {
                lw[size_t(l)].push_back(alloc_fill(size_t(sh.out) * sh.in, 1000 + l * 8 + int(lw[size_t(l)].size()), 2.f / std::sqrt(float(sh.in))));
                chain_bytes += size_t(sh.out) * sh.in * 2;
            }
        uint16_t * lm = alloc_fill(size_t(m.vocab) * m.H, 99, 0.02f);
        const size_t lm_bytes = size_t(m.vocab) * m.H * 2;
        uint16_t *a = alloc_fill(size_t(2) * m.I, 3, 1.f), *b = alloc_fill(size_t(2) * m.I, 4, 0.f), *c = alloc_fill(size_t(2) * m.I, 5, 0.f);
        const Shape lm_shape{"lm_head", m.vocab, m.H, false};
        auto step = [&] {
            for (int l = 0; l < m.layers; ++l) {
                const auto sh = m.shapes();
                launch(sh[0], lw[size_t(l)][0], a, b);  // x -> qkv (its first H values stand in for attention's output)
                launch(sh[1], lw[size_t(l)][1], b, c);  // -> o
                launch(sh[2], lw[size_t(l)][2], c, b);  // -> silu(gate) * up
                launch(sh[3], lw[size_t(l)][3], b, a);  // -> down, the next layer's input
            }
            launch(lm_shape, lm, a, logits, true);
        };
        CK(cudaDeviceSynchronize());
        const float lm_ms = time_ms(20, [&](int) { launch(lm_shape, lm, a, logits, true); });
        const double floor_ms = (chain_bytes + lm_bytes) / (ceiling * 1e12) * 1e3;
        const bool pdl_off = std::getenv("TRTD_CUDA_PDL") && *std::getenv("TRTD_CUDA_PDL") == '0';
        std::printf("%s chain of %d layers + lm_head, one graph, PDL %s: weights %.2f GB, over the read ceiling %.3f ms; "
                    "lm_head alone %.1f us\n", m.name, m.layers, pdl_off ? "off" : "on", (chain_bytes + lm_bytes) / 1e9, floor_ms, lm_ms * 1e3);
        json += std::string(", \"") + m.name + "_chain_floor_ms\": " + std::to_string(floor_ms) + ", \"" + m.name + "_lm_head_us\": " + std::to_string(lm_ms * 1e3);
        for (int cap : caps)
            for (long pf : prefetch) {
                small_gemm_ctas_per_sm() = cap;
                gemv_prefetch_bytes() = pf < 0 ? long(1) << 40 : pf;
                cudaGraph_t g;
                cudaGraphExec_t ge;
                CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
                step();
                CK(cudaStreamEndCapture(stream, &g));
                CK(cudaGraphInstantiate(&ge, g, 0));
                const float chain_ms = time_ms(30, [&](int) { CK(cudaGraphLaunch(ge, stream)); });
                const std::string pfs = pf < 0 ? "row" : std::to_string(pf);
                std::printf("%s chain cap %d prefetch %s: %.3f ms per step (%.3f of the floor)", m.name, cap, pfs.c_str(), chain_ms, floor_ms / chain_ms);
                if (alone && cap == caps[0] && pf == prefetch[0]) {
                    const double sum_ms = layer_alone_ms * m.layers + lm_ms;
                    std::printf("; its kernels alone sum to %.3f ms: the boundaries cost %.1f us per layer", sum_ms, (chain_ms - sum_ms) / m.layers * 1e3);
                    json += std::string(", \"") + m.name + "_alone_sum_ms\": " + std::to_string(sum_ms);
                }
                std::printf("\n");
                json += std::string(", \"") + m.name + "_chain_cap" + std::to_string(cap) + "_pf" + pfs + "_ms\": " + std::to_string(chain_ms);
                CK(cudaGraphExecDestroy(ge));
                CK(cudaGraphDestroy(g));
            }
        small_gemm_ctas_per_sm() = caps[0];
        gemv_prefetch_bytes() = prefetch[0] < 0 ? long(1) << 40 : prefetch[0];
        for (auto & v : lw)
            for (auto * p : v) CK(cudaFree(p));
        CK(cudaFree(lm));
        CK(cudaFree(a));
        CK(cudaFree(b));
        CK(cudaFree(c));
    }
    std::printf("%s}\n", json.c_str());
    return 0;
}
