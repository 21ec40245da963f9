// SiLU-gated product of the MLP: gate[i] = silu(gate[i]) * up[i].
// In f32, rounded once to the model dtype, like the CPU twin.

template <typename T>
__device__ void silu_mul(T* gate, const T* up, u32 n) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float g = to_f32(gate[i]);
        gate[i] = from_f32<T>(g / (1.0f + expf(-g)) * to_f32(up[i]));
    }
}

extern "C" __global__ void silu_mul_f16(f16_t* gate, const f16_t* up, u32 n) {
    grid_dependency();
    silu_mul(gate, up, n);
}
extern "C" __global__ void silu_mul_bf16(bf16_t* gate, const bf16_t* up, u32 n) {
    grid_dependency();
    silu_mul(gate, up, n);
}
