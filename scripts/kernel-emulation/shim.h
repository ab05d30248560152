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
extern uint32_t emu_mma_a[1024][4], emu_mma_b[1024][2];
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
#define __align__(x)
struct uint4 { uint32_t x, y, z, w; };
inline uint4 make_uint4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return {a, b, c, d}; }
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

// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 for the tensor-core attention forward: each lane
// posts its fragments, every lane rebuilds A (16×16) and B (16×8) from all 32 and computes its
// own four outputs, in the PTX ISA's layout (g = lane/4, t = lane%4): a0 = A[g][2t..2t+1],
// a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]; b0 = B[2t..2t+1][g],
// b1 = B[2t+8..2t+9][g]; c0, c1 = C[g][2t..2t+1], c2, c3 = C[g+8][2t..2t+1]; the lower
// element in the low 16 bits.
#define ZETT_EMULATED_MMA
inline float emu_bf16(uint32_t bits16) { return __uint_as_float(bits16 << 16); }
inline void fm_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const unsigned me = threadIdx.x, w0 = me & ~31u;
  for (int e = 0; e < 4; e++) emu_mma_a[me][e] = a[e];
  emu_mma_b[me][0] = b0; emu_mma_b[me][1] = b1;
  __syncwarp();
  float A[16][16], B[16][8];
  for (unsigned ln = 0; ln < 32; ln++) {
    const unsigned g = ln >> 2, t = ln & 3;
    for (int e = 0; e < 4; e++) {
      const unsigned row = g + ((e & 1) ? 8 : 0), col = 2 * t + ((e & 2) ? 8 : 0);
      const uint32_t r = emu_mma_a[w0 + ln][e];
      A[row][col] = emu_bf16(r & 0xFFFFu); A[row][col + 1] = emu_bf16(r >> 16);
    }
    for (int e = 0; e < 2; e++) {
      const unsigned k = 2 * t + (e ? 8 : 0);
      const uint32_t r = emu_mma_b[w0 + ln][e];
      B[k][g] = emu_bf16(r & 0xFFFFu); B[k + 1][g] = emu_bf16(r >> 16);
    }
  }
  const unsigned g = (me & 31) >> 2, t = me & 3;
  for (int e = 0; e < 4; e++) {
    const unsigned row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    double acc = c[e];
    for (int k = 0; k < 16; k++) acc += (double)A[row][k] * B[k][col];
    c[e] = (float)acc;
  }
  __syncwarp();
}
