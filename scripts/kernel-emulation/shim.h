// CPU emulation of the CUDA subset kernels/*.cu use (see run.sh): one std::thread per CUDA
// thread, blocks in sequence, barriers for __syncthreads/__syncwarp/shuffles, __shared__ as
// static storage (blocks never overlap), grids of (x, y) as the launchers use.
#pragma once
#include <barrier>
#include <thread>
#include <vector>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <cstddef>
#include <atomic>
#include <functional>
#include <memory>
#include <cfloat>
#include <mutex>
struct dim3e { unsigned x = 1, y = 1, z = 1; };
extern thread_local dim3e threadIdx, blockIdx;
extern dim3e blockDim, gridDim;
extern std::barrier<>* emu_block_barrier;
extern std::vector<std::unique_ptr<std::barrier<>>> emu_warp_barriers;
extern float emu_shfl[1024];
extern unsigned char* emu_dyn_smem;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffff) { emu_warp_barriers[threadIdx.x / 32]->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int o) {
  emu_shfl[threadIdx.x] = v; __syncwarp();
  float r = emu_shfl[(threadIdx.x & ~31u) | ((threadIdx.x & 31u) ^ o)]; __syncwarp();
  return r;
}
inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline int atomicMax(int* p, int v) { static std::mutex m; std::lock_guard<std::mutex> g(m); int o = *p; if (v > o) *p = v; return o; }
template <class A> void emu_launch(void (*k)(const A), dim3e grid, unsigned block, size_t smem, const A& a) {
  gridDim = grid; blockDim = {block, 1, 1};
  std::vector<unsigned char> dyn(smem + 16);
  emu_dyn_smem = dyn.data();
  for (unsigned by = 0; by < grid.y; by++) for (unsigned bx = 0; bx < grid.x; bx++) {
    std::barrier<> bb(block); emu_block_barrier = &bb;
    emu_warp_barriers.clear();
    for (unsigned w = 0; w < (block + 31) / 32; w++) emu_warp_barriers.emplace_back(new std::barrier<>(std::min(32u, block - w * 32)));
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < block; t++) ts.emplace_back([&, t] { threadIdx = {t, 0, 0}; blockIdx = {bx, by, 0}; k(a); });
    for (auto& th : ts) th.join();
  }
}
