// Greedy sampling on the device: out[0] = index of the largest of n f32
// logits (the first one on ties, NaN never chosen). One block of 1024 threads.

extern "C" __global__ void argmax_f32(u32* out, const float* logits, u32 n) {
    grid_dependency();
    __shared__ float best_v[1024];
    __shared__ u32 best_i[1024];
    const u32 tid = threadIdx.x;
    float bv = NEG_INF;
    u32 bi = 0xffffffffu;
    for (u32 i = tid; i < n; i += blockDim.x) {
        float v = logits[i];
        if (v > bv || (bi == 0xffffffffu && v == bv)) { bv = v; bi = i; }
    }
    best_v[tid] = bv;
    best_i[tid] = bi;
    __syncthreads();
    for (u32 s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) {
            float ov = best_v[tid + s];
            u32 oi = best_i[tid + s];
            if (ov > best_v[tid] || (ov == best_v[tid] && oi < best_i[tid])) { best_v[tid] = ov; best_i[tid] = oi; }
        }
        __syncthreads();
    }
    if (tid == 0) out[0] = best_i[0] == 0xffffffffu ? 0u : best_i[0];
}
