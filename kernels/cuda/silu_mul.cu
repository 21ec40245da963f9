// SiLU-gated product of the MLP: gate[i] = silu(gate[i]) * up[i].
// In f32, rounded once to the model dtype, like the CPU twin. Eight values a
// thread (16-byte loads and stores) where gate and up are 16-byte aligned,
// the last n % 8 one a thread; one a thread otherwise.

__device__ __forceinline__ float silu_times(float g, float u) {
    return g / (1.0f + expf(-g)) * u;
}

template <typename T>
__device__ void silu_mul(T* gate, const T* up, u32 n) {
    const u32 tid = blockIdx.x * blockDim.x + threadIdx.x, stride = gridDim.x * blockDim.x;
    u32 done = 0;
    if ((((size_t)gate | (size_t)up) & 15) == 0) {
        const u32 vecs = n / 8;
        for (u32 v = tid; v < vecs; v += stride) {
            float g[8], u[8];
            unpack8<T>(*(const u32x4*)(gate + (size_t)v * 8), g);
            unpack8<T>(ld_vec(up + (size_t)v * 8), u);
#pragma unroll
            for (int i = 0; i < 8; i++) g[i] = silu_times(g[i], u[i]);
            *(u32x4*)(gate + (size_t)v * 8) = pack8<T>(g);
        }
        done = vecs * 8;
    }
    for (u32 i = done + tid; i < n; i += stride) gate[i] = from_f32<T>(silu_times(to_f32(gate[i]), to_f32(up[i])));
}

extern "C" __global__ void silu_mul_f16(f16_t* gate, const f16_t* up, u32 n) {
    grid_dependency();
    silu_mul(gate, up, n);
}
extern "C" __global__ void silu_mul_bf16(bf16_t* gate, const bf16_t* up, u32 n) {
    grid_dependency();
    silu_mul(gate, up, n);
}
