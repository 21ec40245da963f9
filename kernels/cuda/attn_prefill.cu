// Prefill attention without a score scratch (runtime/src/cuda/prefill.rs),
// flash-attention-2 style; its CPU twin is kernels/src/flash.rs.
//
// Block (blockIdx.x, blockIdx.y = h) owns PF_M = 64 query rows of head h
// (four warps of 16 rows each) and walks the key/value tiles of PF_N = 64
// cache rows that any of its rows can see: from the window's edge (0
// without a window) up to its last row's position. Query row t sits at
// position pos0 + t and sees cache rows j with j <= pos0 + t and, given a
// window, pos0 + t - window < j. Tiles wholly visible to every row of the
// block run unmasked; only the diagonal and the window's edge are masked.
// Query head h reads kv head h / (heads / kv_heads).
//
// Per tile: S = Q Kᵀ on tensor cores (mma.m16n8k16, f32 accumulation, K
// fragments by ldmatrix from shared memory), scaled into the log2 domain;
// then the online softmax in f32: each row keeps its running max m and sum
// l, P = exp2(S - m) in f32 is added to l unrounded, rounded to the model
// dtype and multiplied by V on tensor cores (V fragments by ldmatrix.trans)
// into an f32 accumulator, which is rescaled by exp2(m_old - m_new) when the
// max grows. The output is W(acc / l). Tiles start at multiples of PF_N in
// absolute cache rows, as in the twin, so both see the same running maxima.
//
// Q, K and V tiles are copied to shared memory with cp.async (rows past the
// sequence or the query block zero-filled, so nothing unset reaches an mma):
// the V tile's copy overlaps S and the softmax, the next K tile's the P V
// product. Rows are 16-byte chunks XOR-swizzled by row so that ldmatrix's
// eight row addresses fall in distinct banks. head_dim is 16, 32, 64 or 128
// (the host checks; others take the cuBLAS path); the buffer is sized for
// 128 (48 KiB of static shared memory), and q, the cache planes and out must
// be 16-byte aligned with rows of a multiple of 8 elements (the host checks).
// cp.async and the bf16 mma need compute capability 8.0: built for an older
// device the kernels are empty, and the host never launches them there.

#define PF_M 64
#define PF_N 64
#define PF_THREADS 128
#define PF_MAX_D 128

// The 32-bit shared-memory address of a generic pointer into shared memory.
__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// 16 bytes global -> shared, asynchronously; the bytes past `src_bytes` (all
// 16 when it is 0) are zero-filled.
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, u32 src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

__device__ __forceinline__ void ldsm_x4(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// c += a (16x16, row-major fragments) * b (16x8, column fragments), f32 accumulation.
template <typename T> struct Mma;
template <> struct Mma<f16_t> {
    static __device__ __forceinline__ void run(float* c, const u32* a, u32 b0, u32 b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                     "{%8, %9}, {%0, %1, %2, %3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    // Two f32 rounded to nearest even into one f16x2 register, `lo` in the low half.
    static __device__ __forceinline__ u32 pack(float lo, float hi) {
        u32 r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};
template <> struct Mma<bf16_t> {
    static __device__ __forceinline__ void run(float* c, const u32* a, u32 b0, u32 b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                     "{%8, %9}, {%0, %1, %2, %3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ u32 pack(float lo, float hi) {
        u32 r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};

// Element offset of 16-byte chunk `ch` of row `row` in a [rows][D] tile,
// the chunk index XOR-swizzled by the row.
template <int D>
__device__ __forceinline__ u32 swz(u32 row, u32 ch) {
    constexpr u32 C = D / 8;
    constexpr u32 M = (C < 8 ? C : 8) - 1;
    return row * D + ((ch ^ (row & M)) << 3);
}

// Rows row0..row0+64 of `g` (row stride `stride` elements, rows at or past
// `limit` zero-filled) into the swizzled tile `s`, asynchronously.
template <int D>
__device__ __forceinline__ void load_tile(u16* s, const u16* g, u32 stride, u32 row0, u32 limit) {
    constexpr u32 C = D / 8;
#pragma unroll
    for (u32 i = 0; i < 64 * C / PF_THREADS; ++i) {
        const u32 idx = threadIdx.x + i * PF_THREADS, r = idx / C, c = idx % C;
        const bool ok = row0 + r < limit;
        const u16* src = ok ? g + (size_t)(row0 + r) * stride + c * 8 : g;
        cp_async16(smem_addr(s + swz<D>(r, c)), src, ok ? 16u : 0u);
    }
}

template <typename T, int D>
__device__ void attn_prefill(u16* smem, T* out, const T* q, const T* k_cache, const T* v_cache, u32 tokens, u32 pos0,
                             u32 heads, u32 kv_heads, u32 window, float scale_log2) {
    u16* sq = smem;
    u16* sk = smem + PF_M * D;
    u16* sv = smem + (PF_M + PF_N) * D;
    // The heaviest blocks (the last query rows see the most keys) start first.
    const u32 mblk = gridDim.x - 1 - blockIdx.x, h = blockIdx.y;
    const u32 kvh = h / (heads / kv_heads), q_dim = heads * D, kv_dim = kv_heads * D;
    const u32 seq = pos0 + tokens, m0 = mblk * PF_M;
    const u16* gq = (const u16*)q + h * D;
    const u16* gk = (const u16*)k_cache + kvh * D;
    const u16* gv = (const u16*)v_cache + kvh * D;
    const u32 warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;

    // Positions of the block's first and last query rows, and the cache rows
    // [kbeg, kend) that some row of the block sees.
    const u32 first_q = pos0 + m0;
    const u32 last_q = pos0 + min(m0 + PF_M, tokens) - 1;
    const u32 kend = last_q + 1;
    const u32 kbeg = (window != 0 && first_q + 1 > window) ? first_q + 1 - window : 0;
    const u32 tile_lo = kbeg / PF_N, tile_hi = (kend + PF_N - 1) / PF_N;
    // This thread's two rows (g and g + 8 of its warp's 16) and their positions.
    const u32 qpos[2] = {pos0 + m0 + warp * 16 + g, pos0 + m0 + warp * 16 + g + 8};

    load_tile<D>(sq, gq, q_dim, m0, tokens);
    load_tile<D>(sk, gk, kv_dim, tile_lo * PF_N, seq);
    cp_async_commit();

    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float mrow[2] = {NEG_INF, NEG_INF}, lrow[2] = {0.0f, 0.0f};
    u32 qf[D / 16][4];

    for (u32 tile = tile_lo; tile < tile_hi; ++tile) {
        const u32 n0 = tile * PF_N;
        cp_async_wait_all();
        __syncthreads();  // K (and Q) landed; every warp is done with the last V tile
        load_tile<D>(sv, gv, kv_dim, n0, seq);
        cp_async_commit();
        if (tile == tile_lo) {
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk)
                ldsm_x4(qf[kk], smem_addr(sq + swz<D>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4))));
        }
        // S = Q Kᵀ for this warp's 16 rows over the tile's 64 keys.
        float s[PF_N / 8][4];
#pragma unroll
        for (int j = 0; j < PF_N / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
            for (int np = 0; np < PF_N / 16; ++np) {
                u32 b[4];
                const u32 row = np * 16 + (lane & 7) + ((lane >> 4) << 3);
                ldsm_x4(b, smem_addr(sk + swz<D>(row, kk * 2 + ((lane >> 3) & 1))));
                Mma<T>::run(s[2 * np], qf[kk], b[0], b[1]);
                Mma<T>::run(s[2 * np + 1], qf[kk], b[2], b[3]);
            }
        }
        // Scale, and mask where some row of the block cannot see some key.
        const bool masked = n0 + PF_N - 1 > first_q || (window != 0 && n0 + window <= last_q);
#pragma unroll
        for (int j = 0; j < PF_N / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float v = s[j][e] * scale_log2;
                if (masked) {
                    const u32 key = n0 + j * 8 + tig * 2 + (e & 1), p = qpos[e >> 1];
                    if (key > p || (window != 0 && key + window <= p)) v = NEG_INF;
                }
                s[j][e] = v;
            }
        }
        // Online softmax: per row the tile's max (over the quad of lanes
        // that share the row), the rescale of what came before, P in f32.
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = NEG_INF;
#pragma unroll
            for (int j = 0; j < PF_N / 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(mrow[r], mx);
            const float m_use = m_new == NEG_INF ? 0.0f : m_new;  // a row that has seen nothing yet
            alpha[r] = exp2f(mrow[r] - m_use);
            mrow[r] = m_new;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < PF_N / 8; ++j) {
                s[j][2 * r] = exp2f(s[j][2 * r] - m_use);
                s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - m_use);
                sum += s[j][2 * r] + s[j][2 * r + 1];
            }
            lrow[r] = lrow[r] * alpha[r] + sum;  // this lane's columns; the quad is summed at the end
        }
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
            o[j][0] *= alpha[0];
            o[j][1] *= alpha[0];
            o[j][2] *= alpha[1];
            o[j][3] *= alpha[1];
        }
        // P as the A operand of P V, rounded to the model dtype.
        u32 pa[PF_N / 16][4];
#pragma unroll
        for (int kk = 0; kk < PF_N / 16; ++kk) {
            pa[kk][0] = Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        }
        cp_async_wait_all();
        __syncthreads();  // V landed; every warp is done with this K tile
        if (tile + 1 < tile_hi) {
            load_tile<D>(sk, gk, kv_dim, n0 + PF_N, seq);
            cp_async_commit();
        }
        // O += P V.
#pragma unroll
        for (int kk = 0; kk < PF_N / 16; ++kk) {
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                u32 b[4];
                ldsm_x4_trans(b, smem_addr(sv + swz<D>(kk * 16 + (lane & 15), dp * 2 + (lane >> 4))));
                Mma<T>::run(o[2 * dp], pa[kk], b[0], b[1]);
                Mma<T>::run(o[2 * dp + 1], pa[kk], b[2], b[3]);
            }
        }
    }
    // out = W(acc / l), each lane two adjacent columns of its two rows.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = lrow[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        const u32 row = m0 + warp * 16 + g + 8 * r;
        if (row < tokens) {
            u32* dst = (u32*)((u16*)out + (size_t)row * q_dim + h * D);
#pragma unroll
            for (int j = 0; j < D / 8; ++j) dst[j * 4 + tig] = Mma<T>::pack(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
        }
    }
}

template <typename T>
__device__ __forceinline__ void attn_prefill_any(T* out, const T* q, const T* k_cache, const T* v_cache, u32 tokens,
                                                 u32 pos0, u32 heads, u32 kv_heads, u32 head_dim, u32 window,
                                                 float scale_log2) {
    __shared__ __align__(128) u16 smem[(PF_M + 2 * PF_N) * PF_MAX_D];
    switch (head_dim) {
        case 16: attn_prefill<T, 16>(smem, out, q, k_cache, v_cache, tokens, pos0, heads, kv_heads, window, scale_log2); break;
        case 32: attn_prefill<T, 32>(smem, out, q, k_cache, v_cache, tokens, pos0, heads, kv_heads, window, scale_log2); break;
        case 64: attn_prefill<T, 64>(smem, out, q, k_cache, v_cache, tokens, pos0, heads, kv_heads, window, scale_log2); break;
        case 128: attn_prefill<T, 128>(smem, out, q, k_cache, v_cache, tokens, pos0, heads, kv_heads, window, scale_log2); break;
        default: break;  // the host never launches another size
    }
}

extern "C" __global__ void __launch_bounds__(PF_THREADS) attn_prefill_f16(
    f16_t* out, const f16_t* q, const f16_t* k_cache, const f16_t* v_cache, u32 tokens, u32 pos0, u32 heads,
    u32 kv_heads, u32 head_dim, u32 window, float scale_log2) {
    grid_dependency();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    attn_prefill_any(out, q, k_cache, v_cache, tokens, pos0, heads, kv_heads, head_dim, window, scale_log2);
#endif
}

extern "C" __global__ void __launch_bounds__(PF_THREADS) attn_prefill_bf16(
    bf16_t* out, const bf16_t* q, const bf16_t* k_cache, const bf16_t* v_cache, u32 tokens, u32 pos0, u32 heads,
    u32 kv_heads, u32 head_dim, u32 window, float scale_log2) {
    grid_dependency();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    attn_prefill_any(out, q, k_cache, v_cache, tokens, pos0, heads, kv_heads, head_dim, window, scale_log2);
#endif
}
