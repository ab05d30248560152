// Embedding lookup for the language models and its gradient.
//
// zett_embedding_forward — out[t, c] = table[ids[t], c] · scale for t < tokens, c < cols
//   (scale = √hidden for gemma's scaled embeddings, else 1). table [vocab, cols] bf16 or fp32
//   (table_dtype), out [tokens, cols] in out_dtype. An id outside [0, vocab) (device data the
//   host has not seen) writes a zero row and records 1 + its token index in *error (the
//   largest such, via atomicMax), which the host reads when it next synchronises.
//   Threads: one block per token, a loop over the columns.
//
// zett_embedding_backward — dtable[v, c] += scale · Σ_{t : ids[t] = v} dout[t, c], dtable fp32
//   (accumulated into, as gradients are; out-of-range ids skipped). Deterministic without atomics or sorting: each
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
    int* error;          // 32  forward: 1 + index of a bad id, or untouched
    int tokens;          // 40
    int cols;            // 44
    float scale;         // 48
    int table_dtype;     // 52  forward: table; backward: dout
    int out_dtype;       // 56
    int vocab;           // 60
};                       // 64

extern "C" __device__ int zett_embedding_layout[] = {
    (int)sizeof(EmbeddingArgs),
    (int)offsetof(EmbeddingArgs, ids), (int)offsetof(EmbeddingArgs, table),
    (int)offsetof(EmbeddingArgs, out), (int)offsetof(EmbeddingArgs, dout),
    (int)offsetof(EmbeddingArgs, error), (int)offsetof(EmbeddingArgs, tokens),
    (int)offsetof(EmbeddingArgs, cols), (int)offsetof(EmbeddingArgs, scale),
    (int)offsetof(EmbeddingArgs, table_dtype), (int)offsetof(EmbeddingArgs, out_dtype),
    (int)offsetof(EmbeddingArgs, vocab)};
extern "C" __device__ char zett_embedding_fields[] =
    "ids,table,out,dout,error,tokens,cols,scale,table_dtype,out_dtype,vocab";

extern "C" __global__ void zett_embedding_forward(const EmbeddingArgs a) {
    const int t = blockIdx.x;
    const int id = a.ids[t];
    const size_t dst = static_cast<size_t>(t) * a.cols;
    if (id < 0 || id >= a.vocab) {
        if (threadIdx.x == 0 && a.error != nullptr) atomicMax(a.error, t + 1);
        for (int c = threadIdx.x; c < a.cols; c += blockDim.x) zett_store(a.out, a.out_dtype, dst + c, 0.0f);
        return;
    }
    const size_t src = static_cast<size_t>(id) * a.cols;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        zett_store(a.out, a.out_dtype, dst + c, zett_load(a.table, a.table_dtype, src + c) * a.scale);
    }
}

extern "C" __global__ void zett_embedding_backward(const EmbeddingArgs a) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= a.cols) return;
    float* dtable = static_cast<float*>(a.out);
    for (int t = 0; t < a.tokens; t++) {
        const int id = a.ids[t];
        if (id < 0 || id >= a.vocab) continue;
        const size_t row = static_cast<size_t>(id) * a.cols;
        dtable[row + c] += a.scale * zett_load(a.dout, a.table_dtype, static_cast<size_t>(t) * a.cols + c);
    }
}
