// Appends this pass's keys and values to one layer's cache planes:
// k_cache[pos0 + t, :] = k[t, :], likewise v, for t < tokens.
// Planes are [max_seq_len, kv_dim]; the host checks pos0 + tokens <= max_seq_len.

template <typename T>
__device__ void kv_store(T* k_cache, T* v_cache, const T* k, const T* v, u32 tokens, u32 pos0, u32 kv_dim) {
    u32 n = tokens * kv_dim;
    size_t base = (size_t)pos0 * kv_dim;
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        k_cache[base + i] = k[i];
        v_cache[base + i] = v[i];
    }
}

extern "C" __global__ void kv_store_f16(f16_t* kc, f16_t* vc, const f16_t* k, const f16_t* v, u32 tokens, u32 pos0, u32 kv_dim) {
    grid_dependency();
    kv_store(kc, vc, k, v, tokens, pos0, kv_dim);
}
extern "C" __global__ void kv_store_bf16(bf16_t* kc, bf16_t* vc, const bf16_t* k, const bf16_t* v, u32 tokens, u32 pos0, u32 kv_dim) {
    grid_dependency();
    kv_store(kc, vc, k, v, tokens, pos0, kv_dim);
}
