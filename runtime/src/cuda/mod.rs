//! The CUDA backend: replays a plan on one GPU with two streams.
//!
//! The copy lane is the highest-priority stream and only moves block images
//! from pinned host memory into slot regions; the compute lane runs the
//! shared forward pass ([`crate::forward`]) through [`CudaOps`] (NVRTC-built
//! kernels from `djinn_kernels::cuda` and cuBLAS). Every `record` / `wait` of the
//! plan is one CUDA event; nothing else orders the lanes. All device memory
//! the plan uses is one allocation laid out exactly as `plan.arena` says.
//!
//! Modules, bottom up: `context` (library presence checks, device, RAII
//! streams / events / memory), `nvrtc` (compile + disk cache), `pinned`,
//! `blas`, `ops` (with `gemv`, its decode products, `batched`, its batched prefill products, `decode`, its other decode kernels, and `prefill`, its flash prefill attention), `lt` (cuBLASLt's candidate algorithms, timed, for the benchmarks), `budget`, `placement`, `timing`, `metrics`, `trace`,
//! `host_lane` (the host side of `host_compute`), `graph` (the decode step's
//! device segments, between the plan's events and host computes, captured
//! once as CUDA graphs and replayed), and `backend`, which ties
//! them to the replay engine.

mod backend;
mod batched;
mod blas;
mod budget;
mod context;
mod decode;
mod error;
mod gemv;
mod graph;
mod host_lane;
mod lt;
mod metrics;
mod nvrtc;
mod ops;
mod pinned;
mod placement;
mod prefill;
mod timing;
mod trace;

pub use backend::{CudaBackend, CudaOptions};
pub use context::{check_libraries, Gpu};
pub use error::CudaError;
pub use gemv::GEMV_MAX_M;
pub use lt::LtCandidate;
pub use metrics::CudaMetrics;
pub use nvrtc::{cache_dir as kernel_cache_dir, compile_all as compile_kernels};
pub use ops::CudaOps;
// For djinn-profile (the `djinn-profiler` crate): the RAII wrappers, to time copies and kernels.
pub use context::{DeviceBuffer, Event, Stream};
pub use pinned::PinnedBuffer;
