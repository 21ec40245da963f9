// Token embedding: x[t, :] = f32(table[tokens[t], :]).
// Grid: one block per token row; threads stride over the hidden dimension.
// An id outside the table writes NaN so that it cannot pass unnoticed (the
// host also checks ids before staging them).

template <typename T>
__device__ void embed(float* x, const T* table, const u32* tokens, u32 n, u32 hidden, u32 vocab) {
    u32 t = blockIdx.x;
    if (t >= n) return;
    u32 id = tokens[t];
    float* row = x + (size_t)t * hidden;
    if (id >= vocab) {
        for (u32 i = threadIdx.x; i < hidden; i += blockDim.x) row[i] = __int_as_float(0x7fc00000);
        return;
    }
    const T* src = table + (size_t)id * hidden;
    for (u32 i = threadIdx.x; i < hidden; i += blockDim.x) row[i] = to_f32(src[i]);
}

extern "C" __global__ void embed_f16(float* x, const f16_t* table, const u32* tokens, u32 n, u32 hidden, u32 vocab) {
    grid_dependency();
    embed(x, table, tokens, n, hidden, vocab);
}
extern "C" __global__ void embed_bf16(float* x, const bf16_t* table, const u32* tokens, u32 n, u32 hidden, u32 vocab) {
    grid_dependency();
    embed(x, table, tokens, n, hidden, vocab);
}
