// dst[i] = src[i] for f32: the residual stream back from the host lane. The
// source is page-locked host memory read by the SMs over PCIe (mapped, one
// address space), not a copy-engine transfer: an H2D copy on the compute
// stream would queue behind the copy lane's slot copy on the same engine.
// Grid-stride loop; any grid size covers any n.

extern "C" __global__ void copy_f32(float* dst, const float* src, u32 n) {
    grid_dependency();
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) dst[i] = src[i];
}
