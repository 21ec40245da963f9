// The causal softmax between attention's two GEMMs (runtime/src/cuda/ops.rs):
// S = scale * Q K^T arrives as f32 rows from cuBLAS, P = softmax(S) leaves
// in the model dtype for the P V GEMM on tensor cores.
//
// One block per row r = h * tokens + t (query row t of head h), which sees
// the pos0 + t + 1 positions up to its own, or with a sliding window
// (window > 0) only positions j with pos0 + t - window < j <= pos0 + t; the
// row is written pos0 + tokens long (the GEMM's k), zero outside the visible
// part. Row r of `scores` starts
// at r * stride floats, row r of `probs` at r * out_stride elements.
//
// `probs` may alias `scores` with out_stride = 2 * stride: each output row
// then occupies the first half of the bytes of its own input row. That is
// safe because a block reads its whole row into registers before
// block_max's barrier and writes only after it. Each thread holds up to
// MAX_PER_THREAD values: rows of up to blockDim.x * 16 positions (the host
// checks).

#define MAX_PER_THREAD 16

template <typename T>
__device__ void attn_softmax(T* probs, const float* scores, u32 tokens, u32 pos0, u32 stride, u32 out_stride,
                             u32 window) {
    __shared__ float scratch[32];
    const u32 r = blockIdx.x, t = r % tokens;
    const u32 visible = pos0 + t + 1, seq = pos0 + tokens;
    const u32 lo = window > 0 && visible > window ? visible - window : 0;
    const float* in = scores + (size_t)r * stride;
    float v[MAX_PER_THREAD];
    float mx = NEG_INF;
#pragma unroll
    for (u32 i = 0; i < MAX_PER_THREAD; ++i) {
        const u32 j = threadIdx.x + i * blockDim.x;
        v[i] = j >= lo && j < visible ? in[j] : NEG_INF;
        mx = fmaxf(mx, v[i]);
    }
    mx = block_max(mx, scratch);  // every read of the row happens before this barrier
    float sum = 0.0f;
#pragma unroll
    for (u32 i = 0; i < MAX_PER_THREAD; ++i) {
        const u32 j = threadIdx.x + i * blockDim.x;
        v[i] = j >= lo && j < visible ? expf(v[i] - mx) : 0.0f;
        sum += v[i];
    }
    const float inv = 1.0f / block_sum(sum, scratch);
    T* out = probs + (size_t)r * out_stride;
#pragma unroll
    for (u32 i = 0; i < MAX_PER_THREAD; ++i) {
        const u32 j = threadIdx.x + i * blockDim.x;
        if (j < seq) out[j] = from_f32<T>(v[i] * inv);
    }
}

extern "C" __global__ void attn_softmax_f16(f16_t* probs, const float* scores, u32 tokens, u32 pos0, u32 stride,
                                            u32 out_stride, u32 window) {
    grid_dependency();
    attn_softmax(probs, scores, tokens, pos0, stride, out_stride, window);
}
extern "C" __global__ void attn_softmax_bf16(bf16_t* probs, const float* scores, u32 tokens, u32 pos0, u32 stride,
                                             u32 out_stride, u32 window) {
    grid_dependency();
    attn_softmax(probs, scores, tokens, pos0, stride, out_stride, window);
}
