// Decode products: out[b, r] = sum_k x[b, k] * w[r, k] for a few input rows
// (b < m <= 8), weights [n, k] row-major in the model dtype, f32 accumulation.
//
// At m = 1 a product is bound by streaming w from memory once, so the kernel
// is built around keeping the memory system full until the last byte:
//   - the grid is a whole number of waves (the host launches a multiple of
//     GEMV_BLOCKS_PER_SM blocks per multiprocessor), and block b owns the
//     contiguous rows [b*rows/grid, (b+1)*rows/grid): every block streams the
//     same number of bytes to within one row, so no multiprocessor idles while
//     others finish (with a block per 16 rows, a 5120-row product left a fifth
//     of the device's warp slots empty and ran at 69-77% of copy bandwidth);
//   - a block's rows are read as one sequence of 512-byte runs (32 lanes x 16
//     bytes, 256 elements; the last run of a row partial when k % 256 != 0),
//     each of its 8 warps streaming a contiguous eighth of them, U runs (per
//     matrix) in flight before it uses the first, through the non-coherent
//     path without allocating in L1; x (a few KB, read by every block) comes
//     through L1;
//   - a run lies within one row, so a warp's runs visit rows in order: each
//     lane sums its columns in f32, and when the warp moves to the next row it
//     reduces its sums by shuffles and adds them into the row's shared-memory
//     total; after the block's last run one thread per output applies the
//     epilogue to the totals.
// The epilogues:
//   gemv:      rows numbered across up to three (w, out, n) segments that share
//              x (q, k and v in one launch), each output stored in the model
//              dtype, or as f32 (GEMV_F32: the LM head's logits), or added into
//              the f32 residual stream after rounding to the model dtype
//              (GEMV_RESIDUAL: o_proj and down_proj; the rounding that storing
//              then adding would do).
//   gemv_silu: the same row of two matrices (gate, up) per run, and
//              out = silu(gate) * up, each product rounded to the model dtype
//              first, like matmul then silu_mul.
// The host checks k % 8 == 0, 16-byte aligned w and x, and that no block owns
// more than GEMV_BLOCK_ROWS_MAX rows; other shapes go to cuBLAS. The CPU twins
// are djinn_kernels::gemv_{f16,bf16} and gemv_silu_*.

#define GEMV_WARPS 8
// Runs each warp has in flight at m = 1 (gemv; gemv_silu: half as many of each matrix).
#ifndef GEMV_U
#define GEMV_U 8
#endif
#define GEMV_BLOCK_ROWS_MAX 128
#define GEMV_STORE 0u
#define GEMV_F32 1u
#define GEMV_RESIDUAL 2u
#define GEMV_NONE 0xffffffffu

// The warp's sums for row `row` of the block, reduced and added into its
// shared totals (`tot[a][row * 8 + b]`), then cleared.
template <int A, int M>
__device__ __forceinline__ void gemv_flush(float (*tot)[GEMV_BLOCK_ROWS_MAX * 8], float (&acc)[A][M], u32 row, u32 m) {
    const u32 lane = threadIdx.x & 31;
#pragma unroll
    for (int a = 0; a < A; a++) {
#pragma unroll
        for (int b = 0; b < M; b++) {
            if (b < (int)m && row != GEMV_NONE) {
                const float s = warp_sum(acc[a][b]);
                if (lane == 0) atomicAdd(&tot[a][row * 8 + b], s);
            }
            acc[a][b] = 0.0f;
        }
    }
}

// The product's input rows, as f32 vectors of 8: the model-dtype x itself, or
// (norm_w non-null) x = rmsnorm(resid) * norm_w computed from the f32
// residual stream, each element rounded to the model dtype exactly as
// rmsnorm.cu stores it, so that the normalised rows never go through memory.
// Every block computes the same 1/rms per row (the same reduction in the same
// order). With one input row of at most GEMV_STAGE_MAX_K elements (decode;
// the host then gives the launch k elements of dynamic shared memory, which
// with the static totals stays under the 48 KB a launch may take unasked) the
// block first stages the row, normalised if asked, in shared memory, while
// its first weight loads are on their way; otherwise each vector is read (and
// normalised) from global memory where it is used.
#ifndef GEMV_STAGE_MAX_K
#define GEMV_STAGE_MAX_K 16384
#endif

struct float8_t { float v[8]; };

// Vectors of the input row each thread has in flight while staging it.
#define GEMV_STAGE_UNROLL 4

template <typename T>
struct GemvInput {
    const T* x;          // [m, k] model dtype (norm_w null)
    const float* resid;  // [m, k] f32 (norm_w non-null)
    const T* norm_w;     // [k], or null
    u32 m, k;
    T* staged;           // the row in shared memory, or null
    float inv[8];        // 1/rms of each row, once prepare() ran

    __device__ __forceinline__ float8_t resid8(int b, u32 c) const {
        const u32x4 lo = ld_vec(resid + (size_t)b * k + c), hi = ld_vec(resid + (size_t)b * k + c + 4);
        return {__uint_as_float(lo.x), __uint_as_float(lo.y), __uint_as_float(lo.z), __uint_as_float(lo.w),
                __uint_as_float(hi.x), __uint_as_float(hi.y), __uint_as_float(hi.z), __uint_as_float(hi.w)};
    }

    // x[b, c..c+8] = T(resid * inv[b] * norm_w), as f32.
    __device__ __forceinline__ void normed(int b, u32 c, float (&xf)[8]) const {
        const float8_t r = resid8(b, c);
        float wf[8];
        unpack8<T>(ld_vec(norm_w + c), wf);
#pragma unroll
        for (int i = 0; i < 8; i++) xf[i] = to_f32(from_f32<T>(r.v[i] * inv[b] * wf[i]));
    }

    // Every thread of the block calls this (it synchronises the block).
    __device__ __forceinline__ void prepare(float eps, float* scratch, T* smem) {
        if (norm_w) {
            for (u32 b = 0; b < 8; b++) {
                if (b >= m) break;
                // Loads of up to GEMV_STAGE_UNROLL vectors a thread in flight at once (a
                // loop of dependent round trips to L2 would cost microseconds per block).
                float ss = 0.0f;
                for (u32 c0 = threadIdx.x * 8; c0 < k; c0 += GEMV_STAGE_UNROLL * blockDim.x * 8) {
                    float8_t r[GEMV_STAGE_UNROLL];
#pragma unroll
                    for (int j = 0; j < GEMV_STAGE_UNROLL; j++) {
                        const u32 c = c0 + j * blockDim.x * 8;
                        r[j] = c < k ? resid8(b, c) : float8_t{};
                    }
#pragma unroll
                    for (int j = 0; j < GEMV_STAGE_UNROLL; j++) {
#pragma unroll
                        for (int i = 0; i < 8; i++) ss += r[j].v[i] * r[j].v[i];
                    }
                }
                inv[b] = 1.0f / sqrtf(block_sum(ss, scratch) / (float)k + eps);
            }
        }
        staged = m == 1 && k <= GEMV_STAGE_MAX_K ? smem : nullptr;
        if (!staged) return;
        for (u32 c0 = threadIdx.x * 8; c0 < k; c0 += GEMV_STAGE_UNROLL * blockDim.x * 8) {
            u32x4 v[GEMV_STAGE_UNROLL];
#pragma unroll
            for (int j = 0; j < GEMV_STAGE_UNROLL; j++) {
                const u32 c = c0 + j * blockDim.x * 8;
                if (c >= k) break;
                if (norm_w) {
                    float xf[8];
                    normed(0, c, xf);
                    u32 h[8];
#pragma unroll
                    for (int i = 0; i < 8; i++) h[i] = from_f32<T>(xf[i]).bits;
                    v[j] = {h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16)};
                } else {
                    v[j] = ld_vec(x + c);
                }
            }
#pragma unroll
            for (int j = 0; j < GEMV_STAGE_UNROLL; j++) {
                const u32 c = c0 + j * blockDim.x * 8;
                if (c >= k) break;
                *(u32x4*)(staged + c) = v[j];
            }
        }
        __syncthreads();
    }

    __device__ __forceinline__ void load(int b, u32 c, float (&xf)[8]) const {
        if (staged) {
            unpack8<T>(*(const u32x4*)(staged + c), xf);
        } else if (norm_w) {
            normed(b, c, xf);
        } else {
            unpack8<T>(ld_vec(x + (size_t)b * k + c), xf);
        }
    }
};

// The block's rows [r0, r0 + nr) of A matrices sharing the input: tot[a][r * 8
// + b] = w_a[r0 + r] . x_b, where `row_w(a, g)` is the start of global row g
// of matrix a, for m <= M input rows (M = 1 is decode's case, given registers
// of its own; M = 8 the rest). Every thread of the block calls this.
template <typename T, int A, int U, int M, typename RowW>
__device__ __forceinline__ void gemv_rows(float (*tot)[GEMV_BLOCK_ROWS_MAX * 8], RowW row_w, u32 r0, u32 nr,
                                          GemvInput<T>& in, u32 m, float eps) {
    __shared__ float scratch[32];
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5, k = in.k;
    for (u32 i = threadIdx.x; i < A * GEMV_BLOCK_ROWS_MAX * 8; i += blockDim.x) {
        tot[i / (GEMV_BLOCK_ROWS_MAX * 8)][i % (GEMV_BLOCK_ROWS_MAX * 8)] = 0.0f;
    }
    const u32 rpr = (k + 255) / 256;  // runs per row
    const u32 runs = nr * rpr;
    // This warp's runs: a contiguous share [jb, je) of the block's, walked
    // with a (row, run within the row) cursor, so no division per run.
    const u32 jb = (u32)(((unsigned long long)warp * runs) / GEMV_WARPS);
    const u32 je = (u32)(((unsigned long long)(warp + 1) * runs) / GEMV_WARPS);
    const u32x4 zero = {0u, 0u, 0u, 0u};
    u32x4 wv[A][U];
    u32 fr = jb / rpr, fj = jb - fr * rpr;  // the next run to fetch
    // Runs j0 .. j0 + U of this warp into wv (past je, or this lane's part of a
    // row's partial last run: zeros).
    auto fetch = [&](u32 j0) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const bool live = j0 + u < je;
            const u32 c = fj * 256 + lane * 8;
#pragma unroll
            for (int a = 0; a < A; a++) wv[a][u] = live && c < k ? ld_stream(row_w(a, r0 + fr) + c) : zero;
            if (live && ++fj == rpr) {
                fj = 0;
                fr++;
            }
        }
    };
    fetch(jb);
    extern __shared__ __align__(16) unsigned char gemv_staged[];
    in.prepare(eps, scratch, (T*)gemv_staged);
    __syncthreads();  // tot cleared
    float acc[A][M];
#pragma unroll
    for (int a = 0; a < A; a++) {
#pragma unroll
        for (int b = 0; b < M; b++) acc[a][b] = 0.0f;
    }
    u32 cur = GEMV_NONE;
    u32 ur = jb / rpr, uj = jb - ur * rpr;  // the next run to use
    for (u32 j0 = jb; j0 < je; j0 += U) {
        if (j0 != jb) fetch(j0);
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (j0 + u >= je) break;  // uniform across the warp
            const u32 r = ur, c = uj * 256 + lane * 8;
            if (++uj == rpr) {
                uj = 0;
                ur++;
            }
            if (r != cur) {
                gemv_flush<A, M>(tot, acc, cur, m);
                cur = r;
            }
            if (c >= k) continue;  // this lane's part of a partial run
            float wf[A][8];
#pragma unroll
            for (int a = 0; a < A; a++) unpack8<T>(wv[a][u], wf[a]);
#pragma unroll
            for (int b = 0; b < M; b++) {
                if (b >= (int)m) break;
                float xf[8];
                in.load(b, c, xf);
#pragma unroll
                for (int a = 0; a < A; a++) {
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[a][b] += wf[a][i] * xf[i];
                }
            }
        }
    }
    gemv_flush<A, M>(tot, acc, cur, m);
    __syncthreads();
}

// The rows [r0, r1) that block `blockIdx.x` of the grid owns, of `rows`.
__device__ __forceinline__ void gemv_block_rows(u32 rows, u32& r0, u32& nr) {
    r0 = (u32)(((unsigned long long)blockIdx.x * rows) / gridDim.x);
    nr = (u32)(((unsigned long long)(blockIdx.x + 1) * rows) / gridDim.x) - r0;
}

template <typename T>
__device__ void gemv(void* out0, const T* w0, u32 n0, void* out1, const T* w1, u32 n1, void* out2, const T* w2, u32 n2,
                     const T* x, const float* resid, const T* norm_w, float eps, u32 m, u32 k, u32 epilogue) {
    __shared__ float tot[1][GEMV_BLOCK_ROWS_MAX * 8];
    u32 r0, nr;
    gemv_block_rows(n0 + n1 + n2, r0, nr);
    // Global rows run through the segments one after another.
    auto row_w = [=](int, u32 g) -> const T* {
        return g < n0 ? w0 + (size_t)g * k : g - n0 < n1 ? w1 + (size_t)(g - n0) * k : w2 + (size_t)(g - n0 - n1) * k;
    };
    GemvInput<T> in = {x, resid, norm_w, m, k};
    if (m == 1) {
        gemv_rows<T, 1, GEMV_U, 1>(tot, row_w, r0, nr, in, m, eps);
    } else {
        gemv_rows<T, 1, 4, 8>(tot, row_w, r0, nr, in, m, eps);
    }
    for (u32 i = threadIdx.x; i < nr * m; i += blockDim.x) {
        const u32 r = i / m, b = i - r * m, g = r0 + r;
        void* out = g < n0 ? out0 : g - n0 < n1 ? out1 : out2;
        const u32 row = g < n0 ? g : g - n0 < n1 ? g - n0 : g - n0 - n1;
        const u32 n = g < n0 ? n0 : g - n0 < n1 ? n1 : n2;
        const float v = tot[0][r * 8 + b];
        const size_t o = (size_t)b * n + row;
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
__device__ void gemv_silu(T* out, const T* gate, const T* up, u32 n, const T* x, const float* resid, const T* norm_w,
                          float eps, u32 m, u32 k) {
    __shared__ float tot[2][GEMV_BLOCK_ROWS_MAX * 8];
    u32 r0, nr;
    gemv_block_rows(n, r0, nr);
    auto row_w = [=](int a, u32 g) -> const T* { return (a == 0 ? gate : up) + (size_t)g * k; };
    GemvInput<T> in = {x, resid, norm_w, m, k};
    if (m == 1) {
        gemv_rows<T, 2, GEMV_U / 2, 1>(tot, row_w, r0, nr, in, m, eps);
    } else {
        gemv_rows<T, 2, 1, 8>(tot, row_w, r0, nr, in, m, eps);
    }
    for (u32 i = threadIdx.x; i < nr * m; i += blockDim.x) {
        const u32 r = i / m, b = i - r * m;
        const float g = to_f32(from_f32<T>(tot[0][r * 8 + b]));
        const float u = to_f32(from_f32<T>(tot[1][r * 8 + b]));
        out[(size_t)b * n + r0 + r] = from_f32<T>(g / (1.0f + expf(-g)) * u);
    }
}

// 3 blocks of 256 threads per multiprocessor (80 registers a thread): the
// host's GEMV_BLOCKS_PER_SM. `x` is the input in the model dtype, or null with
// `resid` the f32 residual stream and `norm_w` the RMSNorm weight.
extern "C" __global__ void __launch_bounds__(256, 3) gemv_f16(
    void* out0, const f16_t* w0, u32 n0, void* out1, const f16_t* w1, u32 n1, void* out2, const f16_t* w2, u32 n2,
    const f16_t* x, const float* resid, const f16_t* norm_w, float eps, u32 m, u32 k, u32 epilogue) {
    grid_dependency();
    gemv(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, resid, norm_w, eps, m, k, epilogue);
}
extern "C" __global__ void __launch_bounds__(256, 3) gemv_bf16(
    void* out0, const bf16_t* w0, u32 n0, void* out1, const bf16_t* w1, u32 n1, void* out2, const bf16_t* w2, u32 n2,
    const bf16_t* x, const float* resid, const bf16_t* norm_w, float eps, u32 m, u32 k, u32 epilogue) {
    grid_dependency();
    gemv(out0, w0, n0, out1, w1, n1, out2, w2, n2, x, resid, norm_w, eps, m, k, epilogue);
}
extern "C" __global__ void __launch_bounds__(256, 3) gemv_silu_f16(
    f16_t* out, const f16_t* gate, const f16_t* up, u32 n, const f16_t* x, const float* resid, const f16_t* norm_w,
    float eps, u32 m, u32 k) {
    grid_dependency();
    gemv_silu(out, gate, up, n, x, resid, norm_w, eps, m, k);
}
extern "C" __global__ void __launch_bounds__(256, 3) gemv_silu_bf16(
    bf16_t* out, const bf16_t* gate, const bf16_t* up, u32 n, const bf16_t* x, const float* resid,
    const bf16_t* norm_w, float eps, u32 m, u32 k) {
    grid_dependency();
    gemv_silu(out, gate, up, n, x, resid, norm_w, eps, m, k);
}
