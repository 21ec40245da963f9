// RMSNorm of the f32 residual stream into the model dtype, one block per row:
// out[r, :] = T(x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w), all in f32 and
// rounded once, like the CPU twin rmsnorm_{f16,bf16}.
//
// Where dim % 4 == 0, the row fits RMS_HELD 16-byte loads a thread and the
// operands are aligned (x to 16 bytes, w and out to 8), each thread loads
// its quads of the row once, all at once, keeps them in registers for the
// output, and reads w and writes out four values at a time; the host sizes
// the block for it (`rmsnorm_threads` in ops.rs). Its quads of w are loaded
// before the launch wait (a weight: see grid_dependency in common.cuh), so
// that their round trip to memory overlaps the kernel before instead of
// following the sum of squares. Otherwise one value a thread, the row read
// twice, everything after the wait. Only the order of the sum of squares differs
// between the two (and from the twin's): f32 rounding of one scalar.

#define RMS_HELD 8
// The most threads a block: holding the row and w's quads takes 72-76
// registers a thread, more than a block of 1024 may have (64), so the
// host never asks for more than this (`rmsnorm_threads` reads it).
#define RMS_THREADS 512

template <typename T>
__device__ void rmsnorm(T* out, const float* x, const T* w, u32 rows, u32 dim, float eps) {
    __shared__ float scratch[32];
    u32 r = blockIdx.x;
    if (r >= rows) return;
    const float* row = x + (size_t)r * dim;
    T* dst = out + (size_t)r * dim;
    const u32 quads = dim / 4;
    const bool vec = dim % 4 == 0 && quads <= RMS_HELD * blockDim.x && ((size_t)x & 15) == 0 &&
                     (((size_t)out | (size_t)w) & 7) == 0;
    if (vec) {
        u32x2 wq[RMS_HELD];
#pragma unroll
        for (int j = 0; j < RMS_HELD; j++) {
            const u32 q = threadIdx.x + j * blockDim.x;
            if (q < quads) wq[j] = ld_early2(w + (size_t)q * 4);
        }
        grid_dependency();
        f32x4 held[RMS_HELD];
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < RMS_HELD; j++) {
            const u32 q = threadIdx.x + j * blockDim.x;
            if (q < quads) held[j] = *(const f32x4*)(row + (size_t)q * 4);
        }
#pragma unroll
        for (int j = 0; j < RMS_HELD; j++) {
            const u32 q = threadIdx.x + j * blockDim.x;
            if (q < quads) {
#pragma unroll
                for (int i = 0; i < 4; i++) ss += held[j].v[i] * held[j].v[i];
            }
        }
        ss = block_sum(ss, scratch);
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
#pragma unroll
        for (int j = 0; j < RMS_HELD; j++) {
            const u32 q = threadIdx.x + j * blockDim.x;
            if (q < quads) {
                float wf[4], o[4];
                unpack4<T>(wq[j], wf);
#pragma unroll
                for (int i = 0; i < 4; i++) o[i] = held[j].v[i] * inv * wf[i];
                *(u32x2*)(dst + (size_t)q * 4) = pack4<T>(o);
            }
        }
        return;
    }
    grid_dependency();
    float ss = 0.0f;
    for (u32 i = threadIdx.x; i < dim; i += blockDim.x) ss += row[i] * row[i];
    ss = block_sum(ss, scratch);
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (u32 i = threadIdx.x; i < dim; i += blockDim.x) {
        dst[i] = from_f32<T>(row[i] * inv * to_f32(w[i]));
    }
}

// rmsnorm waits for the kernel before itself (grid_dependency): on its
// vector path after its loads of w, otherwise first.
extern "C" __global__ void __launch_bounds__(RMS_THREADS) rmsnorm_f16(f16_t* out, const float* x, const f16_t* w, u32 rows, u32 dim, float eps) {
    rmsnorm(out, x, w, rows, dim, eps);
}
extern "C" __global__ void __launch_bounds__(RMS_THREADS) rmsnorm_bf16(bf16_t* out, const float* x, const bf16_t* w, u32 rows, u32 dim, float eps) {
    rmsnorm(out, x, w, rows, dim, eps);
}
