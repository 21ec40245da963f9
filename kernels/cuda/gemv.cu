// Decode products: out[b, r] = sum_k x[b, k] * w[r, k] for a few input rows
// (b < m <= 8), weights [n, k] row-major in the model dtype, f32 accumulation.
//
// At m = 1 a product is bound by streaming w from memory once, so the kernel
// is built around the loads: each warp owns GEMV_ROWS weight rows and reads
// them in 512-byte runs (32 lanes x 16 bytes), GEMV_UNROLL runs of each row
// in flight before the first is used, through the non-coherent path without
// allocating in L1; x (a few KB, shared by every warp) comes through L1.
// Each lane accumulates its columns in f32 and a warp shuffle finishes each
// dot product; one lane per output applies the epilogue:
//   gemv:      rows numbered across up to three (w, out, n) segments that share
//              x (q, k and v in one launch), each output stored in the model
//              dtype, or as f32 (GEMV_F32: the LM head's logits), or added into
//              the f32 residual stream after rounding to the model dtype
//              (GEMV_RESIDUAL: o_proj and down_proj; the rounding that storing
//              then adding would do).
//   gemv_silu: the same row of two matrices (gate, up) per warp, and
//              out = silu(gate) * up, each product rounded to the model dtype
//              first, like matmul then silu_mul.
// Launch bounds of 24 warps per multiprocessor (3 blocks of 256 threads) hold the kernel
// to 80 registers, so that every row block of a 5120-row product is resident
// at once. The host checks k % 8 == 0 and 16-byte aligned w and x; other shapes go to
// cuBLAS. The CPU twins are djinn_kernels::gemv_{f16,bf16} and gemv_silu_*.

// Warps a block (the host reads an override from DJINN_NVRTC_DEFINES too, to
// size its grid): 24 warps per multiprocessor in all.
#ifndef GEMV_WARPS
#define GEMV_WARPS 4
#endif
#define GEMV_UNROLL 4
#define GEMV_STORE 0u
#define GEMV_F32 1u
#define GEMV_RESIDUAL 2u

// acc[r][b] += w_r . x_b over k, this lane's share (w_r null: a row past the end).
template <typename T, int R>
__device__ __forceinline__ void dot_rows(float (&acc)[R][8], const T* const* w, const T* x, u32 m, u32 k) {
    const u32 lane = threadIdx.x & 31;
    const u32 chunks = k / 8;
    const u32x4 zero = {0u, 0u, 0u, 0u};
    for (u32 c0 = 0; c0 < chunks; c0 += 32 * GEMV_UNROLL) {
        u32x4 wv[R][GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const u32 c = c0 + u * 32 + lane;
#pragma unroll
            for (int r = 0; r < R; r++) wv[r][u] = (c < chunks && w[r]) ? ld_stream(w[r] + (size_t)c * 8) : zero;
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const u32 c = c0 + u * 32 + lane;
            if (c >= chunks) break;
            float wf[R][8];
#pragma unroll
            for (int r = 0; r < R; r++) unpack8<T>(wv[r][u], wf[r]);
#pragma unroll
            for (int b = 0; b < 8; b++) {
                if (b >= (int)m) break;
                float xf[8];
                unpack8<T>(ld_vec(x + (size_t)b * k + (size_t)c * 8), xf);
#pragma unroll
                for (int r = 0; r < R; r++) {
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[r][b] += wf[r][i] * xf[i];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int b = 0; b < 8; b++) acc[r][b] = warp_sum(acc[r][b]);
    }
}

#define GEMV_ROWS 2

template <typename T>
__device__ void gemv(void* out0, const T* w0, u32 n0, void* out1, const T* w1, u32 n1, void* out2, const T* w2, u32 n2,
                     const T* x, u32 m, u32 k, u32 epilogue) {
    const u32 warp = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const T* w[GEMV_ROWS];
    void* out[GEMV_ROWS];
    u32 row[GEMV_ROWS], n[GEMV_ROWS];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
        // Row numbers run through the segments one after another.
        u32 g = warp * GEMV_ROWS + r;
        w[r] = nullptr;
        out[r] = nullptr;
        row[r] = 0;
        n[r] = 1;
        if (g < n0) {
            w[r] = w0; out[r] = out0; row[r] = g; n[r] = n0;
        } else if (g - n0 < n1) {
            w[r] = w1; out[r] = out1; row[r] = g - n0; n[r] = n1;
        } else if (g - n0 - n1 < n2) {
            w[r] = w2; out[r] = out2; row[r] = g - n0 - n1; n[r] = n2;
        }
        if (w[r]) w[r] += (size_t)row[r] * k;
    }
    float acc[GEMV_ROWS][8];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
#pragma unroll
        for (int b = 0; b < 8; b++) acc[r][b] = 0.0f;
    }
    dot_rows<T, GEMV_ROWS>(acc, w, x, m, k);
    if ((threadIdx.x & 31) != 0) return;
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
        if (!w[r]) continue;
#pragma unroll
        for (int b = 0; b < 8; b++) {
            if (b >= (int)m) break;
            const float v = acc[r][b];
            const size_t o = (size_t)b * n[r] + row[r];
            if (epilogue == GEMV_F32) {
                ((float*)out[r])[o] = v;
            } else if (epilogue == GEMV_RESIDUAL) {
                ((float*)out[r])[o] += to_f32(from_f32<T>(v));
            } else {
                ((T*)out[r])[o] = from_f32<T>(v);
            }
        }
    }
}

template <typename T>
__device__ void gemv_silu(T* out, const T* gate, const T* up, u32 n, const T* x, u32 m, u32 k) {
    const u32 r = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const bool in = r < n;
    const T* w[2] = {in ? gate + (size_t)r * k : nullptr, in ? up + (size_t)r * k : nullptr};
    float acc[2][8];
#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int b = 0; b < 8; b++) acc[i][b] = 0.0f;
    }
    dot_rows<T, 2>(acc, w, x, m, k);
    if (!in || (threadIdx.x & 31) != 0) return;
#pragma unroll
    for (int b = 0; b < 8; b++) {
        if (b >= (int)m) break;
        const float g = to_f32(from_f32<T>(acc[0][b]));
        const float u = to_f32(from_f32<T>(acc[1][b]));
        out[(size_t)b * n + r] = from_f32<T>(g / (1.0f + expf(-g)) * u);
    }
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, 24 / GEMV_WARPS) gemv_f16(
    void* out0, const f16_t* w0, u32 n0, void* out1, const f16_t* w1, u32 n1, void* out2, const f16_t* w2, u32 n2,
    const f16_t* x, u32 m, u32 k, u32 epilogue) {
    grid_dependency();
    gemv(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, 24 / GEMV_WARPS) gemv_bf16(
    void* out0, const bf16_t* w0, u32 n0, void* out1, const bf16_t* w1, u32 n1, void* out2, const bf16_t* w2, u32 n2,
    const bf16_t* x, u32 m, u32 k, u32 epilogue) {
    grid_dependency();
    gemv(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, 24 / GEMV_WARPS) gemv_silu_f16(
    f16_t* out, const f16_t* gate, const f16_t* up, u32 n, const f16_t* x, u32 m, u32 k) {
    grid_dependency();
    gemv_silu(out, gate, up, n, x, m, k);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, 24 / GEMV_WARPS) gemv_silu_bf16(
    bf16_t* out, const bf16_t* gate, const bf16_t* up, u32 n, const bf16_t* x, u32 m, u32 k) {
    grid_dependency();
    gemv_silu(out, gate, up, n, x, m, k);
}
