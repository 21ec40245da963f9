// Decode products: out[b, r] = sum_k x[b, k] * w[r, k] for a few input rows
// (b < m <= 8), weights [n, k] row-major in the model dtype, f32 accumulation.
//
// At m = 1 the product is bound by streaming w from memory once, so the
// kernel is built around the loads: each thread reads 16 bytes of two weight
// rows per chunk, GEMV_UNROLL chunks ahead, through the non-coherent path
// without allocating in L1. The arithmetic runs on the tensor cores
// (mma.m16n8k16, f32 accumulators): a warp owns 16 weight rows (the A
// operand) and the m input rows are the B operand's columns (columns past m
// are zero). Converting 16-bit values to f32 on the CUDA cores would cost
// more instructions than the memory system leaves time for; the tensor cores
// take them as they are.
//
// The mma fragments want each thread's four k values of a row at columns
// 2t, 2t+1, 2t+8, 2t+9; since a dot product does not care in which order k
// is summed, thread t instead loads 8 contiguous values at k = 8t..8t+7 and
// feeds them to two mma's (values 0-3, then 4-7), with the matching x values
// in its B fragment. The permutation is the same for A and B, so the sum is
// the same sum, and every load is a plain 16-byte vector.
//
// A block of GEMV_WARPS warps owns one tile of 16 rows; the warps split k
// between them and add their partial sums in shared memory; then one thread
// per output applies the epilogue:
//   gemv:      up to three (w, out, n) segments in one launch (q, k and v share
//              their input), each stored in the model dtype, or as f32
//              (GEMV_F32: the LM head's logits), or added to the f32 residual
//              stream after rounding to the model dtype (GEMV_RESIDUAL: o_proj,
//              down_proj; the same rounding as storing then adding).
//   gemv_silu: two matrices at the same rows (gate, up), out = silu(gate) * up,
//              each product rounded to the model dtype first, like matmul then
//              silu_mul.
// The host checks k % 8 == 0 and 16-byte aligned w and x; other shapes go to
// cuBLAS. The CPU twins are djinn_kernels::gemv_{f16,bf16} and gemv_silu_*.

#define GEMV_WARPS 4
#define GEMV_STORE 0u
#define GEMV_F32 1u
#define GEMV_RESIDUAL 2u

template <typename T> __device__ __forceinline__ void mma16816(float* c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1);

template <> __device__ __forceinline__ void mma16816<f16_t>(float* c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <> __device__ __forceinline__ void mma16816<bf16_t>(float* c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The sums of one 16-row tile of MATS matrices (rows r0.., all sharing x) into
// part[mat][row][b] (shared, f32), summed over the block's warps.
template <typename T, int MATS, int UNROLL>
__device__ __forceinline__ void gemv_tile(float (*part)[16][8], const T* const* w, u32 n, u32 r0, const T* x, u32 m, u32 k) {
    __shared__ float warp_part[GEMV_WARPS][MATS][16][8];
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u32 g = lane >> 2, t = lane & 3;
    const u32 ra = r0 + g, rb = r0 + g + 8;
    const u32x4 zero = {0u, 0u, 0u, 0u};
    float c[MATS][4];
#pragma unroll
    for (int i = 0; i < MATS; i++) c[i][0] = c[i][1] = c[i][2] = c[i][3] = 0.0f;
    const u32 step = 32 * UNROLL;
    for (u32 s = warp * step; s < k; s += GEMV_WARPS * step) {
        u32x4 wa[MATS][UNROLL], wb[MATS][UNROLL], xv[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const u32 kk = s + u * 32 + t * 8;
            const bool in_k = kk < k;
            xv[u] = (in_k && g < m) ? ld_vec(x + (size_t)g * k + kk) : zero;
#pragma unroll
            for (int i = 0; i < MATS; i++) {
                wa[i][u] = (in_k && ra < n) ? ld_stream(w[i] + (size_t)ra * k + kk) : zero;
                wb[i][u] = (in_k && rb < n) ? ld_stream(w[i] + (size_t)rb * k + kk) : zero;
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
#pragma unroll
            for (int i = 0; i < MATS; i++) {
                mma16816<T>(c[i], wa[i][u].x, wb[i][u].x, wa[i][u].y, wb[i][u].y, xv[u].x, xv[u].y);
                mma16816<T>(c[i], wa[i][u].z, wb[i][u].z, wa[i][u].w, wb[i][u].w, xv[u].z, xv[u].w);
            }
        }
    }
    // Accumulator layout: c0, c1 at (row g, columns 2t, 2t+1); c2, c3 at row g + 8.
#pragma unroll
    for (int i = 0; i < MATS; i++) {
        warp_part[warp][i][g][2 * t] = c[i][0];
        warp_part[warp][i][g][2 * t + 1] = c[i][1];
        warp_part[warp][i][g + 8][2 * t] = c[i][2];
        warp_part[warp][i][g + 8][2 * t + 1] = c[i][3];
    }
    __syncthreads();
    for (u32 e = threadIdx.x; e < MATS * 16 * 8; e += blockDim.x) {
        const u32 i = e / 128, row = (e / 8) % 16, b = e % 8;
        float v = 0.0f;
#pragma unroll
        for (int wp = 0; wp < GEMV_WARPS; wp++) v += warp_part[wp][i][row][b];
        part[i][row][b] = v;
    }
    __syncthreads();
}

template <typename T>
__device__ void gemv(void* out0, const T* w0, u32 n0, void* out1, const T* w1, u32 n1, void* out2, const T* w2, u32 n2,
                     const T* x, u32 m, u32 k, u32 epilogue) {
    __shared__ float part[1][16][8];
    const u32 tiles0 = (n0 + 15) / 16, tiles1 = (n1 + 15) / 16;
    u32 tile = blockIdx.x;
    void* out = out0;
    const T* w = w0;
    u32 n = n0;
    if (tile >= tiles0 + tiles1) {
        tile -= tiles0 + tiles1; out = out2; w = w2; n = n2;
    } else if (tile >= tiles0) {
        tile -= tiles0; out = out1; w = w1; n = n1;
    }
    const u32 r0 = tile * 16;
    gemv_tile<T, 1, 4>(part, &w, n, r0, x, m, k);
    for (u32 e = threadIdx.x; e < 16 * m; e += blockDim.x) {
        const u32 row = e % 16, b = e / 16, r = r0 + row;
        if (r >= n) continue;
        const float v = part[0][row][b];
        const size_t o = (size_t)b * n + r;
        if (epilogue == GEMV_F32) {
            ((float*)out)[o] = v;
        } else if (epilogue == GEMV_RESIDUAL) {
            ((float*)out)[o] += to_f32(from_f32<T>(v));
        } else {
            ((T*)out)[o] = from_f32<T>(v);
        }
    }
}

template <typename T>
__device__ void gemv_silu(T* out, const T* gate, const T* up, u32 n, const T* x, u32 m, u32 k) {
    __shared__ float part[2][16][8];
    const T* w[2] = {gate, up};
    const u32 r0 = blockIdx.x * 16;
    gemv_tile<T, 2, 2>(part, w, n, r0, x, m, k);
    for (u32 e = threadIdx.x; e < 16 * m; e += blockDim.x) {
        const u32 row = e % 16, b = e / 16, r = r0 + row;
        if (r >= n) continue;
        const float g = to_f32(from_f32<T>(part[0][row][b]));
        const float u = to_f32(from_f32<T>(part[1][row][b]));
        out[(size_t)b * n + r] = from_f32<T>(g / (1.0f + expf(-g)) * u);
    }
}

extern "C" __global__ void gemv_f16(
    void* out0, const f16_t* w0, u32 n0, void* out1, const f16_t* w1, u32 n1, void* out2, const f16_t* w2, u32 n2,
    const f16_t* x, u32 m, u32 k, u32 epilogue) {
    gemv(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue);
}
extern "C" __global__ void gemv_bf16(
    void* out0, const bf16_t* w0, u32 n0, void* out1, const bf16_t* w1, u32 n1, void* out2, const bf16_t* w2, u32 n2,
    const bf16_t* x, u32 m, u32 k, u32 epilogue) {
    gemv(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue);
}
extern "C" __global__ void gemv_silu_f16(
    f16_t* out, const f16_t* gate, const f16_t* up, u32 n, const f16_t* x, u32 m, u32 k) {
    gemv_silu(out, gate, up, n, x, m, k);
}
extern "C" __global__ void gemv_silu_bf16(
    bf16_t* out, const bf16_t* gate, const bf16_t* up, u32 n, const bf16_t* x, u32 m, u32 k) {
    gemv_silu(out, gate, up, n, x, m, k);
}
