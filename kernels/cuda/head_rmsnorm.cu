// The per-head RMSNorm of queries and keys (Qwen3's q_norm / k_norm), in
// place on rows = tokens * heads rows of dim = head_dim model-dtype values,
// weights [dim], as transformers' Qwen3RMSNorm rounds it:
//   y = T(x / sqrt(mean(x^2) + eps))   (f32, rounded to the dtype)
//   x = T(f32(y) * f32(w))             (the weight product rounded again)
// like the CPU twin head_rmsnorm_{f16,bf16}. One warp per row (head rows are
// short: 64 to 256), HEAD_NORM_ROWS rows per block; each lane keeps its
// values in registers between the sum and the write, so the row is read once.

#define HEAD_NORM_ROWS 8
#define HEAD_NORM_MAX_PER_LANE 8  // dim up to 256

template <typename T>
__device__ void head_rmsnorm(T* x, const T* w, u32 rows, u32 dim, float eps) {
    const u32 lane = threadIdx.x % 32;
    const u32 r = blockIdx.x * HEAD_NORM_ROWS + threadIdx.x / 32;
    if (r >= rows) return;  // whole warps leave together: the shuffles below see full warps
    T* row = x + (size_t)r * dim;
    float v[HEAD_NORM_MAX_PER_LANE];
    float ss = 0.0f;
#pragma unroll
    for (u32 i = 0; i < HEAD_NORM_MAX_PER_LANE; ++i) {
        const u32 j = lane + i * 32;
        v[i] = j < dim ? to_f32(row[j]) : 0.0f;
        ss += v[i] * v[i];
    }
    ss = warp_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
#pragma unroll
    for (u32 i = 0; i < HEAD_NORM_MAX_PER_LANE; ++i) {
        const u32 j = lane + i * 32;
        if (j < dim) row[j] = from_f32<T>(to_f32(from_f32<T>(v[i] * inv)) * to_f32(w[j]));
    }
}

extern "C" __global__ void head_rmsnorm_f16(f16_t* x, const f16_t* w, u32 rows, u32 dim, float eps) {
    grid_dependency();
    head_rmsnorm(x, w, rows, dim, eps);
}
extern "C" __global__ void head_rmsnorm_bf16(bf16_t* x, const bf16_t* w, u32 rows, u32 dim, float eps) {
    grid_dependency();
    head_rmsnorm(x, w, rows, dim, eps);
}
