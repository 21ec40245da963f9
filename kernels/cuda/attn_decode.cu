// Decode attention: one query row per head over cache rows 0..seq, split
// along the sequence (flash-decoding), so that a long cache is read by many
// blocks at once and no [heads, seq] score matrix goes through memory.
//
// attn_decode: block (h, s) reads rows s*ATTN_CHUNK .. of kv head h / group,
// and writes partial[h, s, :] = (m, l, acc[head_dim]) with, over its rows p,
//   score_p = scale * q_h . k_p,  m = max score_p,  l = sum e^(score_p - m),
//   acc = sum e^(score_p - m) v_p            (all f32).
// attn_combine: out[h, :] = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s,
// M = max m_s, rounded once to the model dtype; given out and the pass
// header, attn_decode runs it itself, in the last split block of each head
// (see attn_decode below).
// With a sliding window (window > 0) the query, at position seq - 1, sees
// rows p > seq - 1 - window only: a block whose chunk lies wholly before
// them writes (-inf, 0, 0...) without reading the cache (attn_combine gives
// it weight e^-inf = 0; the last chunk always holds the query's own row),
// and a block straddling the edge masks the rows before it.
// Unlike the prefill path (attn_softmax.cu between two GEMMs) the
// probabilities stay f32. A cache row of one head is read as head_dim / 8
// 16-byte vectors by as many adjacent threads; the host checks head_dim is
// 8, 16, 32, 64, 128 or 256. CPU twins: djinn_kernels::attn_decode_* and
// attn_combine_*.
//
// attn_decode_rope: RoPE and the cache store of the newest row folded in,
// so that the kernel follows the q/k/v product directly (one launch and one
// launch wait a layer fewer than rope_kv_store then attn_decode). q, k and v
// are the product's, unrotated: each block rotates its head's query in
// shared memory (rounded to the model dtype, as rope_kv_store stores it),
// the blocks of the last live split rotate their kv head's newest key and
// read its value there instead of from the cache, and of those the block
// of the first query head of each group writes both into cache row seq - 1
// (one writer a kv head). Nothing reads that row from the cache before the
// next pass. Same bits as rope_kv_store then attn_decode (common.cuh's
// rope_pair, the same angles); CPU twin djinn_kernels::attn_decode_rope_*.
//
// pass: the pass header ([pos0, tokens] u32, the `pass` activation buffer)
// or null. Where given, seq = pos0 + tokens is read there (the host checks
// it holds the values it launches for) and the grid has a split for every
// chunk of the whole cache (gridDim.y, the partials' stride): the splits
// past seq return at once and attn_combine reads only the live ones, so
// that a captured decode step replays at any position. Without it, seq is
// the argument and every split is live.

#define ATTN_THREADS 128
#define ATTN_CHUNK 64

// The splits holding rows 0..seq.
__device__ __forceinline__ u32 live_splits(u32 seq) { return (seq + ATTN_CHUNK - 1) / ATTN_CHUNK; }
// Cache rows of K and of V each thread holds in registers, loaded at once
// (all of its rows of a chunk at head_dim <= 128); rows past them (head_dim
// 256) are loaded after the scores of the held ones.
#define ATTN_HELD 8
// ATTN_EARLY=0 loads every row after the wait (for measuring).
#ifndef ATTN_EARLY
#define ATTN_EARLY 1
#endif

// The newest row's sources for attn_decode_rope (ROPE): this pass's
// unrotated k and v rows ([num_kv_heads * head_dim]) and the frequency table.
template <typename T>
struct newest_t {
    const T* k;
    const T* v;
    const rope_freqs_t* freqs;
};

// Thread (grp, li) reads 16 bytes at column li * 8 of rows j = grp + t * rows
// of the chunk. The rows before the newest (seq - 1) were written by kernels
// that finished before the kernel before this one began (rope_kv_store, which
// writes the newest row and q; or, with ROPE, this kernel in an earlier
// pass), so they are loaded before the launch wait (ld_early; see
// grid_dependency in common.cuh) and their round trip overlaps that kernel;
// the newest row and q are read after it.
template <typename T, bool ROPE>
__device__ void attn_split(float* partial, const T* q, T* k_cache, T* v_cache, u32 seq, u32 num_heads,
                           u32 num_kv_heads, u32 head_dim, float scale, u32 window, newest_t<T> nw) {
    __shared__ float qs[256];
    __shared__ float sc[ATTN_CHUNK];
    __shared__ float red[32];
    __shared__ float accs[1024];
    // ROPE: the newest key (rotated) and value of this block's kv head.
    __shared__ __align__(16) T kn[ROPE ? 256 : 8], vn[ROPE ? 256 : 8];
    const u32 h = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
    const u32 group = num_heads / num_kv_heads;
    const u32 kvh = h / group;
    const u32 kv_dim = num_kv_heads * head_dim;
    const u32 lanes = head_dim / 8;             // threads per cache row
    const u32 rows = ATTN_THREADS / lanes;      // rows per round
    const u32 li = threadIdx.x % lanes, grp = threadIdx.x / lanes;
    const u32 p0 = split * ATTN_CHUNK;
    const u32 len = min((u32)ATTN_CHUNK, seq - p0);
    // Rows j < first of this chunk are outside the window.
    const u32 lo = window > 0 && seq > window ? seq - window : 0;
    const u32 first = lo > p0 ? lo - p0 : 0;
    const u32 newest = seq - 1 - p0;            // past len unless this is the last chunk
    const size_t col = (size_t)kvh * head_dim + li * 8;
    const u32x4 zero = {0u, 0u, 0u, 0u};
    const T* kc = k_cache + (size_t)p0 * kv_dim + col;
    const T* vc = v_cache + (size_t)p0 * kv_dim + col;
    const bool live = first < len;
    u32x4 kr[ATTN_HELD], vr[ATTN_HELD];
#pragma unroll
    for (int t = 0; t < ATTN_HELD; t++) {
        const u32 j = grp + t * rows;
        const bool early = ATTN_EARLY && live && j < len && j != newest;
        kr[t] = early ? ld_early(kc + (size_t)j * kv_dim) : zero;
        vr[t] = early ? ld_early(vc + (size_t)j * kv_dim) : zero;
    }
    grid_dependency();
    if (!live) {
        float* out = partial + ((size_t)h * splits + split) * (2 + head_dim);
        for (u32 i = threadIdx.x; i < head_dim; i += blockDim.x) out[2 + i] = 0.0f;
        if (threadIdx.x == 0) {
            out[0] = NEG_INF;
            out[1] = 0.0f;
        }
        return;
    }
    if (ROPE) {
        // Pair i of the query (and, in the last split, of the newest key)
        // turned by the newest position, rounded as rope_kv_store stores it.
        const u32 half = head_dim / 2;
        const bool last = newest < len;
        const T* qh = q + (size_t)h * head_dim;
        const T* kh = nw.k + (size_t)kvh * head_dim;
        T* krow = k_cache + (size_t)(seq - 1) * kv_dim + (size_t)kvh * head_dim;
        T* vrow = v_cache + (size_t)(seq - 1) * kv_dim + (size_t)kvh * head_dim;
        const bool writer = last && h % group == 0;
        for (u32 i = threadIdx.x; i < half; i += blockDim.x) {
            float sn, cs, y1, y2;
            sincosf((float)(seq - 1) * nw.freqs->f[i], &sn, &cs);
            rope_pair(to_f32(qh[i]), to_f32(qh[i + half]), sn, cs, y1, y2);
            qs[i] = to_f32(from_f32<T>(y1));
            qs[i + half] = to_f32(from_f32<T>(y2));
            if (last) {
                rope_pair(to_f32(kh[i]), to_f32(kh[i + half]), sn, cs, y1, y2);
                kn[i] = from_f32<T>(y1);
                kn[i + half] = from_f32<T>(y2);
                if (writer) {
                    krow[i] = kn[i];
                    krow[i + half] = kn[i + half];
                }
            }
        }
        if (last) {
            for (u32 i = threadIdx.x; i < head_dim; i += blockDim.x) {
                vn[i] = nw.v[(size_t)kvh * head_dim + i];
                if (writer) vrow[i] = vn[i];
            }
        }
    } else {
        for (u32 i = threadIdx.x; i < head_dim; i += blockDim.x) qs[i] = to_f32(q[(size_t)h * head_dim + i]);
    }
    __syncthreads();
    // Row j of the chunk, this thread's 16 bytes (the newest from shared memory with ROPE).
    auto k_row = [&](u32 j) { return ROPE && j == newest ? *(const u32x4*)(kn + li * 8) : ld_vec(kc + (size_t)j * kv_dim); };
    auto v_row = [&](u32 j) { return ROPE && j == newest ? *(const u32x4*)(vn + li * 8) : ld_vec(vc + (size_t)j * kv_dim); };
#pragma unroll
    for (int i = 0; i < ATTN_HELD; i++) {
        const u32 j = grp + i * rows;
        if (j < len && (j == newest || !ATTN_EARLY)) {
            kr[i] = k_row(j);
            vr[i] = v_row(j);
        }
    }
    float qr[8];
#pragma unroll
    for (int j = 0; j < 8; j++) qr[j] = qs[li * 8 + j];

    // Scores of this chunk's rows into sc: the held rows, then the rest.
    // The loop bounds are the same for every thread (the shuffles need
    // whole warps); rows past len hold zeros.
    const u32 per = (ATTN_CHUNK + rows - 1) / rows;  // rows a thread covers
#pragma unroll
    for (int t = 0; t < ATTN_HELD; t++) {
        if (t >= (int)per) break;
        float kf[8];
        unpack8<T>(kr[t], kf);
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) d += qr[i] * kf[i];
        for (u32 o = lanes / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        const u32 j = grp + t * rows;
        if (li == 0 && j < len) sc[j] = j >= first ? d * scale : NEG_INF;
    }
    for (u32 t = ATTN_HELD; t < per; t++) {
        const u32 j = grp + t * rows;
        float kf[8];
        unpack8<T>(j < len ? k_row(j) : zero, kf);
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) d += qr[i] * kf[i];
        for (u32 o = lanes / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (li == 0 && j < len) sc[j] = j >= first ? d * scale : NEG_INF;
    }
    __syncthreads();
    float mx = NEG_INF;
    for (u32 j = threadIdx.x; j < len; j += blockDim.x) mx = fmaxf(mx, sc[j]);
    mx = block_max(mx, red);
    float l = 0.0f;
    for (u32 j = threadIdx.x; j < len; j += blockDim.x) {
        const float e = j >= first ? expf(sc[j] - mx) : 0.0f;
        sc[j] = e;
        l += e;
    }
    l = block_sum(l, red);  // its barriers also publish sc

    // acc = sum_j e_j v_j: each thread 8 dims of every `rows`-th row.
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int t = 0; t < ATTN_HELD; t++) {
        const u32 j = grp + t * rows;
        if (t < (int)per && j < len) {
            float vf[8];
            unpack8<T>(vr[t], vf);
            const float e = sc[j];
#pragma unroll
            for (int i = 0; i < 8; i++) acc[i] += e * vf[i];
        }
    }
    for (u32 t = ATTN_HELD; t < per; t++) {
        const u32 j = grp + t * rows;
        if (j < len) {
            float vf[8];
            unpack8<T>(v_row(j), vf);
            const float e = sc[j];
#pragma unroll
            for (int i = 0; i < 8; i++) acc[i] += e * vf[i];
        }
    }
#pragma unroll
    for (int i = 0; i < 8; i++) accs[grp * head_dim + li * 8 + i] = acc[i];
    __syncthreads();
    float* out = partial + ((size_t)h * splits + split) * (2 + head_dim);
    for (u32 i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float s = 0.0f;
        for (u32 g = 0; g < rows; g++) s += accs[g * head_dim + i];
        out[2 + i] = s;
    }
    if (threadIdx.x == 0) {
        out[0] = mx;
        out[1] = l;
    }
}

// A partial, read from L2 (ld.cg): in attn_decode's own combine the other
// blocks' partials were written by other multiprocessors during the kernel.
__device__ __forceinline__ float ld_partial(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

// out[h, :] from head h's first `splits` partials (of grid_splits a head),
// each thread holding D of its dims: 1 where the block has a thread a dim
// (attn_combine: the host launches head_dim threads; attn_decode's own
// combine: ATTN_THREADS, for head_dim <= 128), else 2 (head_dim 256). The
// partials are read TILE splits at a time, every load of a tile issued
// before the first is used, so that a head's combine waits for one round
// trip to L2 per tile (and one more per tile for their max first, where the
// splits are more than one tile) instead of one per split and term. Each
// thread sums in split order, as the twin does. combine below picks D.
template <typename T, int TILE, int D>
__device__ void combine_head(T* out, const float* partial, u32 h, u32 grid_splits, u32 splits, u32 head_dim) {
    const u32 stride = 2 + head_dim;
    const float* p = partial + (size_t)h * grid_splits * stride;
    float m = NEG_INF;
    if (splits > TILE) {
        for (u32 s0 = 0; s0 < splits; s0 += TILE) {
            float tm[TILE];
#pragma unroll
            for (int u = 0; u < TILE; u++) tm[u] = s0 + u < splits ? ld_partial(p + (s0 + u) * stride) : NEG_INF;
#pragma unroll
            for (int u = 0; u < TILE; u++) m = fmaxf(m, tm[u]);
        }
    }
    float l = 0.0f, a[D];
#pragma unroll
    for (int d = 0; d < D; d++) a[d] = 0.0f;
    for (u32 s0 = 0; s0 < splits; s0 += TILE) {
        float tm[TILE], tl[TILE], ta[TILE][D];
#pragma unroll
        for (int u = 0; u < TILE; u++) {
            const bool in = s0 + u < splits;
            const float* ps = p + (s0 + u) * stride;
            tm[u] = in ? ld_partial(ps) : NEG_INF;
            tl[u] = in ? ld_partial(ps + 1) : 0.0f;
#pragma unroll
            for (int d = 0; d < D; d++) {
                const u32 i = threadIdx.x + d * blockDim.x;
                ta[u][d] = in && i < head_dim ? ld_partial(ps + 2 + i) : 0.0f;
            }
        }
        if (splits <= TILE) {
#pragma unroll
            for (int u = 0; u < TILE; u++) m = fmaxf(m, tm[u]);
        }
#pragma unroll
        for (int u = 0; u < TILE; u++) {
            if (s0 + u >= splits) break;
            const float e = expf(tm[u] - m);
            l += e * tl[u];
#pragma unroll
            for (int d = 0; d < D; d++) a[d] += e * ta[u][d];
        }
    }
#pragma unroll
    for (int d = 0; d < D; d++) {
        const u32 i = threadIdx.x + d * blockDim.x;
        if (i < head_dim) out[(size_t)h * head_dim + i] = from_f32<T>(a[d] / l);
    }
}

// The tile as large as the registers allow: 16 splits at one dim a thread, 8 at two.
template <typename T>
__device__ void combine(T* out, const float* partial, u32 h, u32 grid_splits, u32 splits, u32 head_dim) {
    if (head_dim <= blockDim.x) combine_head<T, 16, 1>(out, partial, h, grid_splits, splits, head_dim);
    else combine_head<T, 8, 2>(out, partial, h, grid_splits, splits, head_dim);
}

template <typename T>
__device__ void attn_combine(T* out, const float* partial, u32 grid_splits, const u32* pass, u32 head_dim) {
    const u32 splits = pass ? live_splits(pass[0] + pass[1]) : grid_splits;
    combine(out, partial, blockIdx.x, grid_splits, splits, head_dim);
}

// With out (the host passes it with a pass header, for at most
// ATTN_COUNTERS heads), attn_combine is folded in: each live split block of
// head h, its partial written, takes a ticket from the head's counter in the
// pass header (words PASS_HEAD_WORDS.., staged zero with every pass); the
// last of them combines the head, exactly as attn_combine does, and sets
// the counter back to zero for the next layer's launch. One launch and one
// launch wait a layer fewer.
#define PASS_HEAD_WORDS 4
#define ATTN_COUNTERS 60
template <typename T, bool ROPE>
__device__ void attn_decode(float* partial, T* out, const T* q, T* k_cache, T* v_cache, u32 seq, const u32* pass,
                            u32 num_heads, u32 num_kv_heads, u32 head_dim, float scale, u32 window,
                            newest_t<T> nw) {
    if (pass) seq = pass[0] + pass[1];  // copied in before the pass's first kernel
    const u32 live = live_splits(seq);
    if (blockIdx.y >= live) return;
    attn_split<T, ROPE>(partial, q, k_cache, v_cache, seq, num_heads, num_kv_heads, head_dim, scale, window, nw);
    if (!out || !pass) return;
    __shared__ u32 ticket;
    u32* done = (u32*)pass + PASS_HEAD_WORDS + blockIdx.x;
    __threadfence();  // this thread's share of the partial, visible device-wide before the ticket
    __syncthreads();
    if (threadIdx.x == 0) ticket = atomicAdd(done, 1u);
    __syncthreads();
    if (ticket != live - 1) return;
    __threadfence();
    combine(out, partial, blockIdx.x, gridDim.y, live, head_dim);
    if (threadIdx.x == 0) *done = 0u;
}

extern "C" __global__ void attn_decode_f16(float* partial, f16_t* out, const f16_t* q, const f16_t* kc,
                                           const f16_t* vc, u32 seq, const u32* pass, u32 num_heads, u32 num_kv_heads,
                                           u32 head_dim, float scale, u32 window) {
    attn_decode<f16_t, false>(partial, out, q, (f16_t*)kc, (f16_t*)vc, seq, pass, num_heads, num_kv_heads, head_dim,
                              scale, window, {nullptr, nullptr, nullptr});
}
extern "C" __global__ void attn_decode_bf16(float* partial, bf16_t* out, const bf16_t* q, const bf16_t* kc,
                                            const bf16_t* vc, u32 seq, const u32* pass, u32 num_heads,
                                            u32 num_kv_heads, u32 head_dim, float scale, u32 window) {
    attn_decode<bf16_t, false>(partial, out, q, (bf16_t*)kc, (bf16_t*)vc, seq, pass, num_heads, num_kv_heads,
                               head_dim, scale, window, {nullptr, nullptr, nullptr});
}
extern "C" __global__ void attn_decode_rope_f16(float* partial, f16_t* out, const f16_t* q, const f16_t* k,
                                                const f16_t* v, f16_t* kc, f16_t* vc, u32 seq, const u32* pass,
                                                u32 num_heads, u32 num_kv_heads, u32 head_dim, float scale,
                                                u32 window, const rope_freqs_t freqs) {
    attn_decode<f16_t, true>(partial, out, q, kc, vc, seq, pass, num_heads, num_kv_heads, head_dim, scale, window,
                             {k, v, &freqs});
}
extern "C" __global__ void attn_decode_rope_bf16(float* partial, bf16_t* out, const bf16_t* q, const bf16_t* k,
                                                 const bf16_t* v, bf16_t* kc, bf16_t* vc, u32 seq, const u32* pass,
                                                 u32 num_heads, u32 num_kv_heads, u32 head_dim, float scale,
                                                 u32 window, const rope_freqs_t freqs) {
    attn_decode<bf16_t, true>(partial, out, q, kc, vc, seq, pass, num_heads, num_kv_heads, head_dim, scale, window,
                              {k, v, &freqs});
}
extern "C" __global__ void attn_combine_f16(f16_t* out, const float* partial, u32 grid_splits, const u32* pass,
                                            u32 head_dim) {
    grid_dependency();
    attn_combine(out, partial, grid_splits, pass, head_dim);
}
extern "C" __global__ void attn_combine_bf16(bf16_t* out, const float* partial, u32 grid_splits, const u32* pass,
                                            u32 head_dim) {
    grid_dependency();
    attn_combine(out, partial, grid_splits, pass, head_dim);
}
