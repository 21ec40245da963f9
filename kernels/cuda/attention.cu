// Causal grouped-query attention over one layer's KV cache, softmax in f32.
// One block per (head h, query row t): query row t sits at position pos0 + t
// and sees cache rows 0..=pos0+t; head h reads kv head h / (H / KV). The same
// kernel serves prefill (tokens = prompt length, pos0 = 0) and decode
// (tokens = 1, pos0 = tokens already cached).
//
//   s[j] = scale * q[t, h, :] . k[j, kvh, :]     (one warp per key j)
//   p[j] = exp(s[j] - max s) / sum exp            (f32, kept in `scores`)
//   out[t, h, :] = sum_j p[j] v[j, kvh, :]        (threads split d x key range)
//
// `scores` is f32 scratch [H, tokens, pos0 + tokens]. Dynamic shared memory:
// (head_dim + (blockDim / head_dim) * head_dim) floats; the host checks
// head_dim <= blockDim.

template <typename T>
__device__ void attention(T* out, const T* q, const T* k_cache, const T* v_cache, float* scores, u32 tokens, u32 pos0,
                          u32 num_heads, u32 num_kv_heads, u32 head_dim, float scale) {
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    const u32 tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
    const u32 h = blockIdx.x / tokens, t = blockIdx.x % tokens;
    const u32 kvh = h / (num_heads / num_kv_heads);
    const u32 kv_dim = num_kv_heads * head_dim;
    const u32 stride = pos0 + tokens;
    const u32 len = pos0 + t + 1;

    float* qs = smem;
    const T* qrow = q + ((size_t)t * num_heads + h) * head_dim;
    for (u32 d = tid; d < head_dim; d += blockDim.x) qs[d] = to_f32(qrow[d]);
    __syncthreads();

    float* srow = scores + ((size_t)h * tokens + t) * stride;
    float mx = NEG_INF;
    for (u32 j = warp; j < len; j += warps) {
        const T* krow = k_cache + (size_t)j * kv_dim + (size_t)kvh * head_dim;
        float p = 0.0f;
        for (u32 d = lane; d < head_dim; d += 32) p += qs[d] * to_f32(krow[d]);
        p = warp_sum(p) * scale;
        if (lane == 0) srow[j] = p;
        mx = fmaxf(mx, p);
    }
    mx = block_max(mx, scratch);  // its barriers also publish srow to the block

    float sum = 0.0f;
    for (u32 j = tid; j < len; j += blockDim.x) {
        float e = expf(srow[j] - mx);
        srow[j] = e;
        sum += e;
    }
    sum = block_sum(sum, scratch);  // likewise publishes the exponentials
    const float inv = 1.0f / sum;

    const u32 parts = blockDim.x / head_dim;
    const u32 d = tid % head_dim, part = tid / head_dim;
    float* partial = smem + head_dim;
    if (part < parts) {
        const T* vcol = v_cache + (size_t)kvh * head_dim + d;
        float acc = 0.0f;
        for (u32 j = part; j < len; j += parts) acc += srow[j] * to_f32(vcol[(size_t)j * kv_dim]);
        partial[part * head_dim + d] = acc;
    }
    __syncthreads();
    if (tid < head_dim) {
        float o = 0.0f;
        for (u32 p = 0; p < parts; ++p) o += partial[p * head_dim + tid];
        out[((size_t)t * num_heads + h) * head_dim + tid] = from_f32<T>(o * inv);
    }
}

extern "C" __global__ void attention_f16(f16_t* out, const f16_t* q, const f16_t* kc, const f16_t* vc, float* scores,
                                         u32 tokens, u32 pos0, u32 num_heads, u32 num_kv_heads, u32 head_dim, float scale) {
    attention(out, q, kc, vc, scores, tokens, pos0, num_heads, num_kv_heads, head_dim, scale);
}
extern "C" __global__ void attention_bf16(bf16_t* out, const bf16_t* q, const bf16_t* kc, const bf16_t* vc, float* scores,
                                          u32 tokens, u32 pos0, u32 num_heads, u32 num_kv_heads, u32 head_dim, float scale) {
    attention(out, q, kc, vc, scores, tokens, pos0, num_heads, num_kv_heads, head_dim, scale);
}
