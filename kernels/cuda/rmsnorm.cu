// RMSNorm of the f32 residual stream into the model dtype, one block per row:
// out[r, :] = T(x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w), all in f32 and
// rounded once, like the CPU twin rmsnorm_{f16,bf16}.

template <typename T>
__device__ void rmsnorm(T* out, const float* x, const T* w, u32 rows, u32 dim, float eps) {
    __shared__ float scratch[32];
    u32 r = blockIdx.x;
    if (r >= rows) return;
    const float* row = x + (size_t)r * dim;
    float ss = 0.0f;
    for (u32 i = threadIdx.x; i < dim; i += blockDim.x) ss += row[i] * row[i];
    ss = block_sum(ss, scratch);
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    T* dst = out + (size_t)r * dim;
    for (u32 i = threadIdx.x; i < dim; i += blockDim.x) {
        dst[i] = from_f32<T>(row[i] * inv * to_f32(w[i]));
    }
}

extern "C" __global__ void rmsnorm_f16(f16_t* out, const float* x, const f16_t* w, u32 rows, u32 dim, float eps) {
    grid_dependency();
    rmsnorm(out, x, w, rows, dim, eps);
}
extern "C" __global__ void rmsnorm_bf16(bf16_t* out, const float* x, const bf16_t* w, u32 rows, u32 dim, float eps) {
    grid_dependency();
    rmsnorm(out, x, w, rows, dim, eps);
}
