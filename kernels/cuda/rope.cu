// Rotary position embedding, Hugging Face rotate-half convention, in place on
// q [tokens, num_heads*head_dim] and k [tokens, num_kv_heads*head_dim] at
// positions pos0..pos0+tokens:
//   a = pos * freqs.f[i]  (i < head_dim/2; the model's table, scaled or not)
//   x'[i]        = x[i] cos a - x[i + half] sin a
//   x'[i + half] = x[i + half] cos a + x[i] sin a
// The angle is f32, as in transformers' LlamaRotaryEmbedding
// and the CPU twin, so long positions round the same way. One thread per
// (token, head, i).

template <typename T>
__device__ void rope(T* q, T* k, u32 tokens, u32 pos0, u32 num_heads, u32 num_kv_heads, u32 head_dim, const rope_freqs_t& freqs) {
    u32 half = head_dim / 2;
    u32 heads = num_heads + num_kv_heads;
    u32 n = tokens * heads * half;
    for (u32 idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
        u32 i = idx % half;
        u32 h = (idx / half) % heads;
        u32 t = idx / (half * heads);
        T* row = h < num_heads ? q + ((size_t)t * num_heads + h) * head_dim
                               : k + ((size_t)t * num_kv_heads + (h - num_heads)) * head_dim;
        float a = (float)(pos0 + t) * freqs.f[i];
        float s, c;
        sincosf(a, &s, &c);
        float y1, y2;
        rope_pair(to_f32(row[i]), to_f32(row[i + half]), s, c, y1, y2);
        row[i] = from_f32<T>(y1);
        row[i + half] = from_f32<T>(y2);
    }
}

extern "C" __global__ void rope_f16(f16_t* q, f16_t* k, u32 tokens, u32 pos0, u32 num_heads, u32 num_kv_heads, u32 head_dim, const rope_freqs_t freqs) {
    grid_dependency();
    rope(q, k, tokens, pos0, num_heads, num_kv_heads, head_dim, freqs);
}
extern "C" __global__ void rope_bf16(bf16_t* q, bf16_t* k, u32 tokens, u32 pos0, u32 num_heads, u32 num_kv_heads, u32 head_dim, const rope_freqs_t freqs) {
    grid_dependency();
    rope(q, k, tokens, pos0, num_heads, num_kv_heads, head_dim, freqs);
}
