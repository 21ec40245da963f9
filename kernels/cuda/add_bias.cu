// A projection's bias, added after the product: out[r, i] = T(f32(out[r, i]) +
// f32(bias[i])) for r < rows, i < n (Qwen2's q/k/v biases, attention_bias's
// o bias), one rounding, like the CPU twin add_bias_{f16,bf16}. Grid-stride
// loop over the rows * n elements; any grid size covers any shape.

template <typename T>
__device__ void add_bias(T* out, const T* bias, u32 rows, u32 n) {
    const size_t total = (size_t)rows * n;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        out[idx] = from_f32<T>(to_f32(out[idx]) + to_f32(bias[idx % n]));
    }
}

extern "C" __global__ void add_bias_f16(f16_t* out, const f16_t* bias, u32 rows, u32 n) {
    grid_dependency();
    add_bias(out, bias, rows, n);
}
extern "C" __global__ void add_bias_bf16(bf16_t* out, const bf16_t* bias, u32 rows, u32 n) {
    grid_dependency();
    add_bias(out, bias, rows, n);
}
