// RoPE and the KV-cache store in one pass over this pass's q, k, v:
//   q[t, h, :] rotated in place (h < num_heads),
//   k_cache[pos0 + t, g, :] = rope(k[t, g, :]),  v_cache[pos0 + t, g, :] = v[t, g, :],
// k itself is left as it was (its rotated rows live in the cache). The
// rotation is rope.cu's, term for term (the by-value frequency table, f32
// angle, rotate-half),
// so the CPU twin djinn_kernels::rope_kv_store_{f16,bf16} is rope then
// kv_store. One thread per (token, hpt heads, 8 pairs) with 16-byte
// accesses where head_dim % 16 == 0 and the buffers are 16-byte aligned (one
// per pair otherwise); the host checks that rows pos0..pos0+tokens exist in
// the cache.
//
// hpt (heads a thread rotates, 1..=ROPE_HEADS) is the host's choice: a
// prefill pass has threads to spare and computes each angle (sincosf) once
// for ROPE_HEADS heads; a decode token has 80 heads x 8 pairs of work in all,
// and one head a thread puts every load in flight at once instead of a chain
// of eight (on the H200 at Llama-2-13B's shape, 3.0-3.5 us against 7.6 at eight).

// pass: the pass header ([pos0, tokens] u32, the `pass` activation buffer)
// or null; where given, pos0 is read there (the host checks it holds the
// same value at launch), so that a captured decode step replays at any
// position.

// The most heads one thread rotates.
#define ROPE_HEADS 8

// out[0..8] = rope of the pairs (x1[u], x2[u]) by angles with sines s, cosines c.
template <typename T>
__device__ __forceinline__ void rotate8(const u32x4& a, const u32x4& b, const float (&s)[8], const float (&c)[8],
                                        u32x4& ra, u32x4& rb) {
    float x1[8], x2[8], y1[8], y2[8];
    unpack8<T>(a, x1);
    unpack8<T>(b, x2);
#pragma unroll
    for (int u = 0; u < 8; u++) rope_pair(x1[u], x2[u], s[u], c[u], y1[u], y2[u]);
    ra = pack8<T>(y1);
    rb = pack8<T>(y2);
}

template <typename T>
__device__ void rope_kv_store(T* q, const T* k, const T* v, T* k_cache, T* v_cache, u32 tokens, u32 pos0,
                              const u32* pass, u32 num_heads, u32 num_kv_heads, u32 head_dim, u32 hpt,
                              const rope_freqs_t& freqs) {
    if (pass) pos0 = pass[0];
    // The table in shared memory: lanes read different entries, which from
    // the kernel's parameter space would be serialised.
    __shared__ float fs[ROPE_MAX_PAIRS];
    const u32 half = head_dim / 2;
    for (u32 i = threadIdx.x; i < half; i += blockDim.x) fs[i] = freqs.f[i];
    __syncthreads();
    const u32 heads = num_heads + num_kv_heads;
    const u32 groups = (heads + hpt - 1) / hpt;
    const u32 kv_dim = num_kv_heads * head_dim;
    const bool vec = head_dim % 16 == 0 &&
                     (((size_t)q | (size_t)k | (size_t)v | (size_t)k_cache | (size_t)v_cache) & 15) == 0;
    if (vec) {
        // One thread per (token, hpt heads, 8 consecutive pairs): 16-byte
        // loads and stores of both halves of each head.
        const u32 chunks = half / 8;
        const u32 n = tokens * groups * chunks;
        for (u32 idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
            const u32 i0 = idx % chunks * 8;
            const u32 h0 = (idx / chunks) % groups * hpt;
            const u32 t = idx / (chunks * groups);
            float s[8], c[8];
#pragma unroll
            for (int u = 0; u < 8; u++) sincosf((float)(pos0 + t) * fs[i0 + u], &s[u], &c[u]);
#pragma unroll
            for (u32 j = 0; j < ROPE_HEADS; j++) {
                const u32 h = h0 + j;
                if (j >= hpt || h >= heads) break;
                u32x4 ra, rb;
                if (h < num_heads) {
                    T* row = q + ((size_t)t * num_heads + h) * head_dim;
                    rotate8<T>(ld_vec(row + i0), ld_vec(row + half + i0), s, c, ra, rb);
                    *(u32x4*)(row + i0) = ra;
                    *(u32x4*)(row + half + i0) = rb;
                } else {
                    const u32 g = h - num_heads;
                    const size_t src = (size_t)t * kv_dim + (size_t)g * head_dim;
                    const size_t dst = (size_t)(pos0 + t) * kv_dim + (size_t)g * head_dim;
                    rotate8<T>(ld_vec(k + src + i0), ld_vec(k + src + half + i0), s, c, ra, rb);
                    *(u32x4*)(k_cache + dst + i0) = ra;
                    *(u32x4*)(k_cache + dst + half + i0) = rb;
                    *(u32x4*)(v_cache + dst + i0) = ld_vec(v + src + i0);
                    *(u32x4*)(v_cache + dst + half + i0) = ld_vec(v + src + half + i0);
                }
            }
        }
        return;
    }
    // Any even head size: one thread per (token, hpt heads, pair).
    const u32 n = tokens * groups * half;
    for (u32 idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
        const u32 i = idx % half;
        const u32 h0 = (idx / half) % groups * hpt;
        const u32 t = idx / (half * groups);
        float s, c;
        sincosf((float)(pos0 + t) * fs[i], &s, &c);
#pragma unroll
        for (u32 j = 0; j < ROPE_HEADS; j++) {
            const u32 h = h0 + j;
            if (j >= hpt || h >= heads) break;
            if (h < num_heads) {
                T* row = q + ((size_t)t * num_heads + h) * head_dim;
                float y1, y2;
                rope_pair(to_f32(row[i]), to_f32(row[i + half]), s, c, y1, y2);
                row[i] = from_f32<T>(y1);
                row[i + half] = from_f32<T>(y2);
            } else {
                const u32 g = h - num_heads;
                const size_t src = (size_t)t * kv_dim + (size_t)g * head_dim;
                const size_t dst = (size_t)(pos0 + t) * kv_dim + (size_t)g * head_dim;
                float y1, y2;
                rope_pair(to_f32(k[src + i]), to_f32(k[src + i + half]), s, c, y1, y2);
                k_cache[dst + i] = from_f32<T>(y1);
                k_cache[dst + i + half] = from_f32<T>(y2);
                v_cache[dst + i] = v[src + i];
                v_cache[dst + i + half] = v[src + i + half];
            }
        }
    }
}

extern "C" __global__ void rope_kv_store_f16(f16_t* q, const f16_t* k, const f16_t* v, f16_t* kc, f16_t* vc, u32 tokens,
                                             u32 pos0, const u32* pass, u32 num_heads, u32 num_kv_heads,
                                             u32 head_dim, u32 hpt, const rope_freqs_t freqs) {
    grid_dependency();
    rope_kv_store(q, k, v, kc, vc, tokens, pos0, pass, num_heads, num_kv_heads, head_dim, hpt, freqs);
}
extern "C" __global__ void rope_kv_store_bf16(bf16_t* q, const bf16_t* k, const bf16_t* v, bf16_t* kc, bf16_t* vc,
                                              u32 tokens, u32 pos0, const u32* pass, u32 num_heads,
                                              u32 num_kv_heads, u32 head_dim, u32 hpt, const rope_freqs_t freqs) {
    grid_dependency();
    rope_kv_store(q, k, v, kc, vc, tokens, pos0, pass, num_heads, num_kv_heads, head_dim, hpt, freqs);
}
