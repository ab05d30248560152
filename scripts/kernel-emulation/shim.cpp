#include "shim.h"
thread_local dim3e threadIdx, blockIdx;
dim3e blockDim, gridDim;
std::barrier<>* emu_block_barrier;
std::vector<std::unique_ptr<std::barrier<>>> emu_warp_barriers;
float emu_shfl[1024];
unsigned char* emu_dyn_smem;
uint32_t emu_mma_a[1024][4], emu_mma_b[1024][2];
