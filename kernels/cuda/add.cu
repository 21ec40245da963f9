// Residual add: x[i] += f32(y[i]); x is the f32 residual stream.
// Grid-stride loop; any grid size covers any n.

template <typename T>
__device__ void add(float* x, const T* y, u32 n) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] += to_f32(y[i]);
}

extern "C" __global__ void add_f16(float* x, const f16_t* y, u32 n) {
    grid_dependency();
    add(x, y, n);
}
extern "C" __global__ void add_bf16(float* x, const bf16_t* y, u32 n) {
    grid_dependency();
    add(x, y, n);
}
