// Residual add: x[i] += f32(y[i]); x is the f32 residual stream.
// Grid-stride loops; any grid size covers any n. Eight values a thread
// (one 16-byte load of y, two of x) where x and y are 16-byte aligned, the
// last n % 8 one a thread; one a thread otherwise. Each sum is the same
// single f32 add as the CPU twin's.

template <typename T>
__device__ void add(float* x, const T* y, u32 n) {
    const u32 tid = blockIdx.x * blockDim.x + threadIdx.x, stride = gridDim.x * blockDim.x;
    u32 done = 0;
    if ((((size_t)x | (size_t)y) & 15) == 0) {
        const u32 vecs = n / 8;
        for (u32 v = tid; v < vecs; v += stride) {
            float yf[8];
            unpack8<T>(ld_vec(y + (size_t)v * 8), yf);
            f32x4* xp = (f32x4*)(x + (size_t)v * 8);
            f32x4 a = xp[0], b = xp[1];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                a.v[i] += yf[i];
                b.v[i] += yf[4 + i];
            }
            xp[0] = a;
            xp[1] = b;
        }
        done = vecs * 8;
    }
    for (u32 i = done + tid; i < n; i += stride) x[i] += to_f32(y[i]);
}

extern "C" __global__ void add_f16(float* x, const f16_t* y, u32 n) {
    grid_dependency();
    add(x, y, n);
}
extern "C" __global__ void add_bf16(float* x, const bf16_t* y, u32 n) {
    grid_dependency();
    add(x, y, n);
}
