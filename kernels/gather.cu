// Embedding lookup for the language models and its gradient.
//
// zett_embedding_forward — out[t, c] = table[ids[t], c] · scale for t < tokens, c < cols
//   (scale = √hidden for gemma's scaled embeddings, else 1). table [vocab, cols] bf16 or fp32
//   (table_dtype), out [tokens, cols] in out_dtype. The kernel trusts ids (device data) to lie
//   in [0, vocab). Threads: one block per token, a loop over the columns.
//
// zett_embedding_backward — dtable[v, c] += scale · Σ_{t : ids[t] = v} dout[t, c], dtable fp32
//   (accumulated into, as gradients are). Deterministic without atomics or sorting: each
//   thread owns one column c and walks the tokens in order, so every sum has one fixed order
//   and no two threads ever touch the same element. Parallelism is the column count
//   (hidden ≥ 2048 in the models that matter: ≥ 8 blocks of 256); the token loop is serial.
//   Threads: grid (ceil(cols/256)), 256 threads, thread → column.
#include "common.cuh"

struct EmbeddingArgs {
    const int* ids;      //  0
    const void* table;   //  8
    void* out;           // 16  forward: [tokens, cols]; backward: dtable [vocab, cols] fp32
    const void* dout;    // 24  backward only: [tokens, cols]
    int tokens;          // 32
    int cols;            // 36
    float scale;         // 40
    int table_dtype;     // 44  forward: table; backward: dout
    int out_dtype;       // 48
    int pad0;            // 52
};                       // 56

extern "C" __device__ int zett_embedding_layout[] = {
    (int)sizeof(EmbeddingArgs),
    (int)offsetof(EmbeddingArgs, ids), (int)offsetof(EmbeddingArgs, table),
    (int)offsetof(EmbeddingArgs, out), (int)offsetof(EmbeddingArgs, dout),
    (int)offsetof(EmbeddingArgs, tokens), (int)offsetof(EmbeddingArgs, cols),
    (int)offsetof(EmbeddingArgs, scale), (int)offsetof(EmbeddingArgs, table_dtype),
    (int)offsetof(EmbeddingArgs, out_dtype), (int)offsetof(EmbeddingArgs, pad0)};
extern "C" __device__ char zett_embedding_fields[] =
    "ids,table,out,dout,tokens,cols,scale,table_dtype,out_dtype,pad0";

extern "C" __global__ void zett_embedding_forward(const EmbeddingArgs a) {
    const int t = blockIdx.x;
    const size_t src = static_cast<size_t>(a.ids[t]) * a.cols;
    const size_t dst = static_cast<size_t>(t) * a.cols;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        zett_store(a.out, a.out_dtype, dst + c, zett_load(a.table, a.table_dtype, src + c) * a.scale);
    }
}

extern "C" __global__ void zett_embedding_backward(const EmbeddingArgs a) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= a.cols) return;
    float* dtable = static_cast<float*>(a.out);
    for (int t = 0; t < a.tokens; t++) {
        const size_t row = static_cast<size_t>(a.ids[t]) * a.cols;
        dtable[row + c] += a.scale * zett_load(a.dout, a.table_dtype, static_cast<size_t>(t) * a.cols + c);
    }
}
