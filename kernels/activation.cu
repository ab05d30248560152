// Element-wise activations and gated linear units, forward and backward, any storage dtype,
// fp32 arithmetic. Activation codes as in common.cuh: none, GELU tanh, GELU erf, SiLU.
//
// zett_act_forward  — out[i] = act(x[i] + bias[i mod cols])            (bias optional)
// zett_act_backward — dx[i]  = dy[i] · act'(x[i] + bias[i mod cols])
//   i < rows·cols, all [rows, cols] contiguous.
// zett_glu_forward  — out[r, c] = act(gate[r, c]) · up[r, c]   (SwiGLU: SiLU; GeGLU: GELU tanh)
// zett_glu_backward — dgate[r, c] = dy · up · act'(gate),  dup[r, c] = dy · act(gate)
//   gate and up are [rows, cols] windows with row stride in_ld (gate = base, up = base + I,
//   in_ld = 2I reads a fused gate|up projection); out / dy have row stride out_ld; dgate / dup
//   share in_ld, so they land in a fused gradient buffer the same way.
// Threads: grid-stride loops over the elements, 256 per block.
#include "common.cuh"

struct ActArgs {
    const void* x;       //  0
    const void* bias;    //  8
    const void* dy;      // 16  backward only
    void* out;           // 24  forward: out; backward: dx
    long long count;     // 32
    int cols;            // 40
    int act;             // 44
    int x_dtype;         // 48
    int bias_dtype;      // 52
    int dy_dtype;        // 56
    int out_dtype;       // 60
};                       // 64

extern "C" __device__ int zett_act_layout[] = {
    (int)sizeof(ActArgs),
    (int)offsetof(ActArgs, x), (int)offsetof(ActArgs, bias), (int)offsetof(ActArgs, dy),
    (int)offsetof(ActArgs, out), (int)offsetof(ActArgs, count), (int)offsetof(ActArgs, cols),
    (int)offsetof(ActArgs, act), (int)offsetof(ActArgs, x_dtype),
    (int)offsetof(ActArgs, bias_dtype), (int)offsetof(ActArgs, dy_dtype),
    (int)offsetof(ActArgs, out_dtype)};
extern "C" __device__ char zett_act_fields[] =
    "x,bias,dy,out,count,cols,act,x_dtype,bias_dtype,dy_dtype,out_dtype";

struct GluArgs {
    const void* gate;    //  0
    const void* up;      //  8
    const void* dy;      // 16  backward only
    void* out;           // 24  forward only
    void* dgate;         // 32  backward only
    void* dup;           // 40  backward only
    int rows;            // 48
    int cols;            // 52
    int in_ld;           // 56
    int out_ld;          // 60
    int act;             // 64
    int in_dtype;        // 68  gate, up, dgate, dup
    int out_dtype;       // 72  out, dy
    int pad0;            // 76
};                       // 80

extern "C" __device__ int zett_glu_layout[] = {
    (int)sizeof(GluArgs),
    (int)offsetof(GluArgs, gate), (int)offsetof(GluArgs, up), (int)offsetof(GluArgs, dy),
    (int)offsetof(GluArgs, out), (int)offsetof(GluArgs, dgate), (int)offsetof(GluArgs, dup),
    (int)offsetof(GluArgs, rows), (int)offsetof(GluArgs, cols), (int)offsetof(GluArgs, in_ld),
    (int)offsetof(GluArgs, out_ld), (int)offsetof(GluArgs, act),
    (int)offsetof(GluArgs, in_dtype), (int)offsetof(GluArgs, out_dtype),
    (int)offsetof(GluArgs, pad0)};
extern "C" __device__ char zett_glu_fields[] =
    "gate,up,dy,out,dgate,dup,rows,cols,in_ld,out_ld,act,in_dtype,out_dtype,pad0";

extern "C" __global__ void zett_act_forward(const ActArgs a) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < a.count; i += stride) {
        float v = zett_load(a.x, a.x_dtype, i);
        if (a.bias != nullptr) v += zett_load(a.bias, a.bias_dtype, i % a.cols);
        zett_store(a.out, a.out_dtype, i, zett_activate(v, a.act));
    }
}

extern "C" __global__ void zett_act_backward(const ActArgs a) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < a.count; i += stride) {
        float v = zett_load(a.x, a.x_dtype, i);
        if (a.bias != nullptr) v += zett_load(a.bias, a.bias_dtype, i % a.cols);
        zett_store(a.out, a.out_dtype, i,
                   zett_load(a.dy, a.dy_dtype, i) * zett_activate_grad(v, a.act));
    }
}

extern "C" __global__ void zett_glu_forward(const GluArgs a) {
    const long long count = static_cast<long long>(a.rows) * a.cols;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < count; i += stride) {
        const long long r = i / a.cols, c = i - r * a.cols;
        const size_t in = static_cast<size_t>(r) * a.in_ld + c;
        const float g = zett_load(a.gate, a.in_dtype, in), u = zett_load(a.up, a.in_dtype, in);
        zett_store(a.out, a.out_dtype, static_cast<size_t>(r) * a.out_ld + c,
                   zett_activate(g, a.act) * u);
    }
}

extern "C" __global__ void zett_glu_backward(const GluArgs a) {
    const long long count = static_cast<long long>(a.rows) * a.cols;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < count; i += stride) {
        const long long r = i / a.cols, c = i - r * a.cols;
        const size_t in = static_cast<size_t>(r) * a.in_ld + c;
        const float g = zett_load(a.gate, a.in_dtype, in), u = zett_load(a.up, a.in_dtype, in);
        const float dy = zett_load(a.dy, a.out_dtype, static_cast<size_t>(r) * a.out_ld + c);
        zett_store(a.dgate, a.in_dtype, in, dy * u * zett_activate_grad(g, a.act));
        zett_store(a.dup, a.in_dtype, in, dy * zett_activate(g, a.act));
    }
}
