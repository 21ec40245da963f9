// Decode products: out[b, r] = sum_k x[b, k] * w[r, k] for a few input rows
// (b < m <= 8), weights [n, k] row-major in the model dtype, f32 accumulation.
//
// At m = 1 a product is bound by streaming w from memory once, so the kernel
// is built around the loads: each warp owns one or two weight rows (the
// host's choice by shape, `rows_per_warp`; two for m > 1) and reads
// them in 512-byte runs (32 lanes x 16 bytes), GEMV_UNROLL runs of each row
// in flight before the first is used and each reloaded with the run
// GEMV_UNROLL ahead as soon as it is used (dot_row_rolling), through the
// non-coherent path without allocating in L1; x (a few KB, shared by every
// warp) comes through L1.
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
// Launch bounds of 24 warps per multiprocessor (GEMV_SM_WARPS / GEMV_WARPS blocks) hold
// the kernel to 80 registers. Products with fewer rows than the device holds
// warps at two rows a warp (on the H200, 5120: Llama-2-13B's o_proj and
// down_proj) run in one partial wave, and the host chooses how they are
// spread (`gemv_layout` in gemv.rs): long rows one a warp, so that there are
// more warps than the device holds and multiprocessors that finish early
// take the rest; short ones two a warp with `ahead` bytes prefetched into
// L2. The host checks k % 8 == 0 and 16-byte aligned w and x; other shapes go to
// cuBLAS. The CPU twins are djinn_kernels::gemv_{f16,bf16} and gemv_silu_*.

// Warps a block (the host reads an override from DJINN_NVRTC_DEFINES too, to
// size its grid): 24 warps per multiprocessor in all.
#ifndef GEMV_WARPS
#define GEMV_WARPS 4
#endif
#ifndef GEMV_UNROLL
#define GEMV_UNROLL 4
#endif
// Warps a multiprocessor holds: the launch bounds' register budget (24 holds
// the kernel to 80 registers). A tuning override, like the two above.
#ifndef GEMV_SM_WARPS
#define GEMV_SM_WARPS 24
#endif
#define GEMV_STORE 0u
#define GEMV_F32 1u
#define GEMV_RESIDUAL 2u

// Issues the loads of run c0 (GEMV_UNROLL 512-byte runs of each row) into
// wv; EARLY: before the launch wait (ld_early).
template <typename T, int R, bool EARLY>
__device__ __forceinline__ void load_runs(u32x4 (&wv)[R][GEMV_UNROLL], const T* const* w, u32 c0, u32 chunks) {
    const u32 lane = threadIdx.x & 31;
    const u32x4 zero = {0u, 0u, 0u, 0u};
#pragma unroll
    for (int u = 0; u < GEMV_UNROLL; u++) {
        const u32 c = c0 + u * 32 + lane;
#pragma unroll
        for (int r = 0; r < R; r++) {
            const T* p = w[r] + (size_t)c * 8;
            wv[r][u] = (c < chunks && w[r]) ? (EARLY ? ld_early(p) : ld_stream(p)) : zero;
        }
    }
}

// L2 prefetch ahead of the loads, for products with too few rows to keep
// the memory busy on the registers' loads alone (the host's choice, by
// shape: `ahead` bytes of each row, 0 for none): lane 0 keeps the `ahead`
// bytes past the warp's loads of each row on their way into L2, with one
// bulk prefetch (cp.async.bulk.prefetch, sm_90) per round of loads, and the
// loads then find them there. What is read and summed is unchanged.
#define GEMV_RUN_BYTES (32 * GEMV_UNROLL * 16)  // of a row, one round of a warp's loads

// L2, fetch bytes [from, from + len) of each row, clipped to the row (from,
// len and the row's bytes are multiples of 16). Weights are never written,
// so this may run before the launch wait.
template <typename T, int R>
__device__ __forceinline__ void prefetch_rows(const T* const* w, u32 from, u32 len, u32 row_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if ((threadIdx.x & 31) != 0 || from >= row_bytes) return;
    len = min(len, row_bytes - from);
#pragma unroll
    for (int r = 0; r < R; r++) {
        if (w[r]) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"((const char*)w[r] + from), "r"(len));
    }
#endif
}

// The weights' first runs are loaded, then the kernel waits for the one
// before it (grid_dependency): weights are never written by a kernel, so
// they may be read before the wait (see common.cuh), and their first round
// trip to memory overlaps the tail of the kernel before (a norm, RoPE,
// attention or the last wave of a product) instead of following it. x is
// read only after the wait. GEMV_PRELOAD=0 waits first (for measuring).
#ifndef GEMV_PRELOAD
#define GEMV_PRELOAD 1
#endif
// With a prefetch, the first `ahead` bytes past the first round are asked for too.
template <typename T, int R>
__device__ __forceinline__ void first_runs(u32x4 (&wv)[R][GEMV_UNROLL], const T* const* w, u32 chunks, u32 ahead) {
    if (!GEMV_PRELOAD) grid_dependency();
    load_runs<T, R, GEMV_PRELOAD != 0>(wv, w, 0, chunks);
    if (ahead) prefetch_rows<T, R>(w, GEMV_RUN_BYTES, ahead, chunks * 16);
    if (GEMV_PRELOAD) grid_dependency();
}

// One input row, the loads rolling: each of the GEMV_UNROLL slots of wv (and
// of x's runs) is loaded again, with the run GEMV_UNROLL ahead, as soon as
// its products are done, so that every warp keeps its loads in flight all
// the time instead of waiting for all of them and then issuing none while it
// multiplies. acc[r][0] += w_r . x over k, this lane's share, as dot_rows.
// GEMV_ROLL=0 takes dot_rows for one row too (for measuring).
#ifndef GEMV_ROLL
#define GEMV_ROLL 1
#endif
template <typename T, int R, int M>
__device__ __forceinline__ void dot_row_rolling(float (&acc)[R][M], u32x4 (&wv)[R][GEMV_UNROLL], const T* const* w,
                                                const T* x, u32 k, u32 ahead) {
    const u32 lane = threadIdx.x & 31;
    const u32 chunks = k / 8;
    const u32x4 zero = {0u, 0u, 0u, 0u};
    u32x4 xv[GEMV_UNROLL];
#pragma unroll
    for (int u = 0; u < GEMV_UNROLL; u++) {
        const u32 c = u * 32 + lane;
        xv[u] = c < chunks ? ld_vec(x + (size_t)c * 8) : zero;
    }
    for (u32 c0 = 0; c0 < chunks; c0 += 32 * GEMV_UNROLL) {
        // This round loads the next run of each row; the prefetch stays `ahead` bytes past it.
        if (ahead) prefetch_rows<T, R>(w, c0 * 16 + GEMV_RUN_BYTES + ahead, GEMV_RUN_BYTES, chunks * 16);
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const u32 c = c0 + u * 32 + lane;
            // Rows past the end and chunks past k hold zeros: they add nothing.
            float xf[8];
            unpack8<T>(xv[u], xf);
#pragma unroll
            for (int r = 0; r < R; r++) {
                float wf[8];
                unpack8<T>(wv[r][u], wf);
#pragma unroll
                for (int i = 0; i < 8; i++) acc[r][0] += wf[i] * xf[i];
            }
            const u32 next = c + 32 * GEMV_UNROLL;
#pragma unroll
            for (int r = 0; r < R; r++) wv[r][u] = (next < chunks && w[r]) ? ld_stream(w[r] + (size_t)next * 8) : zero;
            xv[u] = next < chunks ? ld_vec(x + (size_t)next * 8) : zero;
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) acc[r][0] = warp_sum(acc[r][0]);
}

// acc[r][b] += w_r . x_b over k, this lane's share (w_r null: a row past the
// end), wv holding the loads of the first runs (first_runs).
template <typename T, int R, int M>
__device__ __forceinline__ void dot_rows(float (&acc)[R][M], u32x4 (&wv)[R][GEMV_UNROLL], const T* const* w,
                                         const T* x, u32 m, u32 k) {
    const u32 lane = threadIdx.x & 31;
    const u32 chunks = k / 8;
    for (u32 c0 = 0; c0 < chunks; c0 += 32 * GEMV_UNROLL) {
        if (c0 > 0) load_runs<T, R, false>(wv, w, c0, chunks);
        // One input row: its runs are loaded beside the weights', so that
        // the products below wait for one round trip, not one per run.
        u32x4 xv[M == 1 ? GEMV_UNROLL : 1];
        if (M == 1) {
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                const u32 c = c0 + u * 32 + lane;
                if (c < chunks) xv[u] = ld_vec(x + (size_t)c * 8);
            }
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const u32 c = c0 + u * 32 + lane;
            if (c >= chunks) break;
            float wf[R][8];
#pragma unroll
            for (int r = 0; r < R; r++) unpack8<T>(wv[r][u], wf[r]);
#pragma unroll
            for (int b = 0; b < M; b++) {
                if (b >= (int)m) break;
                float xf[8];
                unpack8<T>(M == 1 ? xv[u] : ld_vec(x + (size_t)b * k + (size_t)c * 8), xf);
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
        for (int b = 0; b < M; b++) acc[r][b] = warp_sum(acc[r][b]);
    }
}

// Which of the three segments global row g falls in (rows numbered through
// the segments one after another), and its row there; 3 past the last.
__device__ __forceinline__ u32 segment_of(u32 g, u32 n0, u32 n1, u32 n2, u32& row) {
    if (g < n0) { row = g; return 0; }
    if (g - n0 < n1) { row = g - n0; return 1; }
    if (g - n0 - n1 < n2) { row = g - n0 - n1; return 2; }
    return 3;
}

// M: the most input rows the body is compiled for (its accumulators are
// registers): 1, the decode step, or GEMV_MAX_M. R: weight rows per warp.
#define GEMV_MAX_M 8
template <typename T, int M, int R>
__device__ void gemv(void* out0, const T* w0, u32 n0, void* out1, const T* w1, u32 n1, void* out2, const T* w2, u32 n2,
                     const T* x, u32 m, u32 k, u32 epilogue, u32 ahead) {
    const u32 g0 = (blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5)) * R;
    // Only the rows' addresses live through the loop (the outputs' are
    // found again after it: fewer registers held across the loads).
    const T* w[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        u32 row = 0;
        const u32 s = segment_of(g0 + r, n0, n1, n2, row);
        const T* base = s == 0 ? w0 : s == 1 ? w1 : s == 2 ? w2 : nullptr;
        w[r] = base ? base + (size_t)row * k : nullptr;
    }
    float acc[R][M];
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int b = 0; b < M; b++) acc[r][b] = 0.0f;
    }
    u32x4 wv[R][GEMV_UNROLL];
    first_runs<T, R>(wv, w, k / 8, ahead);
    // One input row into the residual stream: lane 0 reads the values it
    // adds to now, after the wait, so that the warp's last step is a store
    // instead of a round trip to L2 and a store (each output has one warp).
    float res[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        u32 row = 0;
        const u32 s = segment_of(g0 + r, n0, n1, n2, row);
        void* out = s == 0 ? out0 : s == 1 ? out1 : out2;
        const bool early = M == 1 && epilogue == GEMV_RESIDUAL && (threadIdx.x & 31) == 0 && s != 3;
        res[r] = early ? ld_f32_here((const float*)out + row) : 0.0f;
    }
    if (M == 1 && GEMV_ROLL) dot_row_rolling<T, R, M>(acc, wv, w, x, k, ahead);
    else dot_rows<T, R, M>(acc, wv, w, x, m, k);
    if ((threadIdx.x & 31) != 0) return;
#pragma unroll
    for (int r = 0; r < R; r++) {
        u32 row = 0;
        const u32 s = segment_of(g0 + r, n0, n1, n2, row);
        if (s == 3) continue;
        void* out = s == 0 ? out0 : s == 1 ? out1 : out2;
        const u32 n = s == 0 ? n0 : s == 1 ? n1 : n2;
#pragma unroll
        for (int b = 0; b < M; b++) {
            if (b >= (int)m) break;
            const float v = acc[r][b];
            const size_t o = (size_t)b * n + row;
            if (epilogue == GEMV_F32) {
                ((float*)out)[o] = v;
            } else if (epilogue == GEMV_RESIDUAL && M == 1) {
                ((float*)out)[o] = res[r] + to_f32(from_f32<T>(v));
            } else if (epilogue == GEMV_RESIDUAL) {
                ((float*)out)[o] += to_f32(from_f32<T>(v));
            } else {
                ((T*)out)[o] = from_f32<T>(v);
            }
        }
    }
}

template <typename T, int M>
__device__ void gemv_silu(T* out, const T* gate, const T* up, u32 n, const T* x, u32 m, u32 k) {
    const u32 r = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const bool in = r < n;
    const T* w[2] = {in ? gate + (size_t)r * k : nullptr, in ? up + (size_t)r * k : nullptr};
    float acc[2][M];
#pragma unroll
    for (int i = 0; i < 2; i++) {
#pragma unroll
        for (int b = 0; b < M; b++) acc[i][b] = 0.0f;
    }
    u32x4 wv[2][GEMV_UNROLL];
    first_runs<T, 2>(wv, w, k / 8, 0);
    if (M == 1 && GEMV_ROLL) dot_row_rolling<T, 2, M>(acc, wv, w, x, k, 0);
    else dot_rows<T, 2, M>(acc, wv, w, x, m, k);
    if (!in || (threadIdx.x & 31) != 0) return;
#pragma unroll
    for (int b = 0; b < M; b++) {
        if (b >= (int)m) break;
        const float g = to_f32(from_f32<T>(acc[0][b]));
        const float u = to_f32(from_f32<T>(acc[1][b]));
        out[(size_t)b * n + r] = from_f32<T>(g / (1.0f + expf(-g)) * u);
    }
}

// rows_per_warp (1 or 2) and ahead (bytes, a multiple of 16) as the host's
// gemv_layout chose them; several input rows take two rows a warp and no
// prefetch whatever is passed (their body is compiled for that alone).
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, GEMV_SM_WARPS / GEMV_WARPS) gemv_f16(
    void* out0, const f16_t* w0, u32 n0, void* out1, const f16_t* w1, u32 n1, void* out2, const f16_t* w2, u32 n2,
    const f16_t* x, u32 m, u32 k, u32 epilogue, u32 rows_per_warp, u32 ahead) {
    if (m == 1 && rows_per_warp == 1) gemv<f16_t, 1, 1>(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue, ahead);
    else if (m == 1) gemv<f16_t, 1, 2>(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue, ahead);
    else gemv<f16_t, GEMV_MAX_M, 2>(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue, 0);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, GEMV_SM_WARPS / GEMV_WARPS) gemv_bf16(
    void* out0, const bf16_t* w0, u32 n0, void* out1, const bf16_t* w1, u32 n1, void* out2, const bf16_t* w2, u32 n2,
    const bf16_t* x, u32 m, u32 k, u32 epilogue, u32 rows_per_warp, u32 ahead) {
    if (m == 1 && rows_per_warp == 1) gemv<bf16_t, 1, 1>(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue, ahead);
    else if (m == 1) gemv<bf16_t, 1, 2>(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue, ahead);
    else gemv<bf16_t, GEMV_MAX_M, 2>(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, m, k, epilogue, 0);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, GEMV_SM_WARPS / GEMV_WARPS) gemv_silu_f16(
    f16_t* out, const f16_t* gate, const f16_t* up, u32 n, const f16_t* x, u32 m, u32 k) {
    if (m == 1) gemv_silu<f16_t, 1>(out, gate, up, n, x, m, k);
    else gemv_silu<f16_t, GEMV_MAX_M>(out, gate, up, n, x, m, k);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32, GEMV_SM_WARPS / GEMV_WARPS) gemv_silu_bf16(
    bf16_t* out, const bf16_t* gate, const bf16_t* up, u32 n, const bf16_t* x, u32 m, u32 k) {
    if (m == 1) gemv_silu<bf16_t, 1>(out, gate, up, n, x, m, k);
    else gemv_silu<bf16_t, GEMV_MAX_M>(out, gate, up, n, x, m, k);
}
