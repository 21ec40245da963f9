// Shared by every kernel source: 16-bit float storage types and their
// conversions, written without cuda_fp16.h / cuda_bf16.h so that NVRTC needs
// no include path (the headers are not installed on every machine that has
// libnvrtc). The runtime prepends this file to each .cu before compiling.
//
// Conversions round to nearest even, like the `half` crate the CPU twins use:
// f16 through the PTX cvt instructions, bf16 by integer arithmetic (NaN kept
// quiet), so GPU and CPU round every stored value identically.

typedef unsigned short u16;
typedef unsigned int u32;

#define NEG_INF __int_as_float(0xff800000)

// RoPE's inverse frequencies, pair i of a head turning by pos * f[i] (the
// first head_dim / 2 entries used), passed to rope.cu and rope_kv_store.cu
// by value: 512 bytes of the 4 KB kernel parameter space, so a scaled table
// (llama3, linear) needs no device memory. The runtime's twin is
// djinn_runtime::ops::RopeTable.
#define ROPE_MAX_PAIRS 128
struct rope_freqs_t { float f[ROPE_MAX_PAIRS]; };

// One RoPE pair (x1, x2) turned by the angle whose sine is s and cosine c,
// each product and the sum rounded on its own (no contraction into an FMA),
// as the CPU twins compute it: every kernel that rotates (rope.cu,
// rope_kv_store.cu, attn_decode.cu's fused form) gives the same bits.
__device__ __forceinline__ void rope_pair(float x1, float x2, float s, float c, float& y1, float& y2) {
    y1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    y2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

struct f16_t { u16 bits; };
struct bf16_t { u16 bits; };

__device__ __forceinline__ float to_f32(f16_t x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}

__device__ __forceinline__ float to_f32(bf16_t x) {
    return __uint_as_float(((u32)x.bits) << 16);
}

__device__ __forceinline__ float to_f32(float x) { return x; }

template <typename T> __device__ __forceinline__ T from_f32(float f);

template <> __device__ __forceinline__ f16_t from_f32<f16_t>(float f) {
    f16_t r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(f));
    return r;
}

template <> __device__ __forceinline__ bf16_t from_f32<bf16_t>(float f) {
    u32 u = __float_as_uint(f);
    bf16_t r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.bits = (u16)((u >> 16) | 0x0040u);  // quiet NaN, sign kept
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);      // round to nearest even
        r.bits = (u16)(u >> 16);
    }
    return r;
}

template <> __device__ __forceinline__ float from_f32<float>(float f) { return f; }

// Sum over a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the total. `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : NEG_INF;
    return warp_max(v);
}

// 16-byte vector loads of 16-bit values (8 per load), read-only. `ld_stream`
// is for data read once (decode weights): it does not allocate in L1.
struct u32x4 { u32 x, y, z, w; };

__device__ __forceinline__ u32x4 ld_stream(const void* p) {
    u32x4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// ld_stream for loads issued before grid_dependency (a product's first
// weight runs): ptxas keeps non-coherent (.nc) loads behind
// griddepcontrol.wait, so these take the coherent path, and volatile keeps
// them in program order ahead of the wait.
__device__ __forceinline__ u32x4 ld_early(const void* p) {
    u32x4 r;
    asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

__device__ __forceinline__ u32x4 ld_vec(const void* p) {
    u32x4 r;
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// Four f32 (the residual stream) as one 16-byte access, and four 16-bit
// values as one 8-byte access; the pointers must be aligned to the size
// (each kernel checks its operands and otherwise takes a scalar path).
// Coherent loads: the kernels that use them write the same buffers.
struct alignas(16) f32x4 { float v[4]; };
struct alignas(8) u32x2 { u32 x, y; };

// One f32, loaded where it stands in the program: volatile, so that the
// compiler does not sink it to its use (gemv.cu's residual, read before the
// products it is added to).
__device__ __forceinline__ float ld_f32_here(const float* p) {
    float v;
    asm volatile("ld.global.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

// Eight bytes (four 16-bit values) for a load before grid_dependency:
// coherent and volatile for ld_early's reasons, without its L1 hint.
__device__ __forceinline__ u32x2 ld_early2(const void* p) {
    u32x2 r;
    asm volatile("ld.global.v2.u32 {%0, %1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
    return r;
}

template <typename T>
__device__ __forceinline__ void unpack4(const u32x2& v, float* f) {
    T a, b, c, d;
    a.bits = (u16)(v.x & 0xffffu);
    b.bits = (u16)(v.x >> 16);
    c.bits = (u16)(v.y & 0xffffu);
    d.bits = (u16)(v.y >> 16);
    f[0] = to_f32(a);
    f[1] = to_f32(b);
    f[2] = to_f32(c);
    f[3] = to_f32(d);
}

template <typename T>
__device__ __forceinline__ u32x2 pack4(const float* f) {
    return {(u32)from_f32<T>(f[0]).bits | ((u32)from_f32<T>(f[1]).bits << 16),
            (u32)from_f32<T>(f[2]).bits | ((u32)from_f32<T>(f[3]).bits << 16)};
}

// The 8 values of a 16-byte vector of T, as f32 (element 0 in the low half of x).
template <typename T>
__device__ __forceinline__ void unpack8(const u32x4& v, float* f) {
    const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        T lo, hi;
        lo.bits = (u16)(w[i] & 0xffffu);
        hi.bits = (u16)(w[i] >> 16);
        f[2 * i] = to_f32(lo);
        f[2 * i + 1] = to_f32(hi);
    }
}

// The 8 values f as a 16-byte vector of T (element 0 in the low half of x), each rounded once.
template <typename T>
__device__ __forceinline__ u32x4 pack8(const float* f) {
    u32 w[4];
#pragma unroll
    for (int i = 0; i < 4; i++) w[i] = (u32)from_f32<T>(f[2 * i]).bits | ((u32)from_f32<T>(f[2 * i + 1]).bits << 16);
    return {w[0], w[1], w[2], w[3]};
}

// Programmatic dependent launch (sm_90 and later): the runtime launches
// kernels so that the next one in the stream may start while this one runs,
// its blocks waiting here, at their very first instruction, until every
// earlier kernel of the stream has finished and its writes are visible; then
// each lets the kernel after it do the same. Nothing is written and
// nothing a kernel writes is read before the wait, so the order of kernels
// is the order of their effects, exactly as without it; what is saved is
// the launch latency between them. When a kernel's blocks start, the
// kernel before it has passed its own wait, so every kernel before that one
// has finished: only the one just before may still be writing. Every kernel
// calls this first, except three that first issue loads of what that kernel
// cannot be writing, so that their round trip overlaps it (through
// ld_early, or ld_early2 for rmsnorm's 8-byte quads):
//   gemv.cu, the weights' first runs: no kernel writes a weight (weights
//     reach the device by copies: resident ones at load, streamed ones on
//     the copy stream, whose event the compute stream waits on before the
//     launch, a full dependency);
//   attn_decode.cu, the cache rows before the newest: the kernel before it
//     (rope_kv_store) writes the newest row and q, which are read after;
//   rmsnorm.cu, the norm's weight (a weight, as gemv.cu's).
// Without the launch attribute both instructions are no-ops.
__device__ __forceinline__ void grid_dependency() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
