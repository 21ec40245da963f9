//! Djinn: run large language models on GPUs too small to hold them.
//!
//! This root package only owns the integration tests (`tests/`) and the
//! examples (`examples/`); the work is done by the member crates, re-exported
//! here for them:
//!
//! * [`core`] — the plan contract: schema, model description, verifier.
//! * [`compiler`] — `djinn-compile`: model + GPU → verified plan.
//! * [`kernels`] — CUDA kernel sources and their CPU twins.
//! * [`runtime`] — `djinn-exec`: replays a plan on the CPU or a GPU.

pub use djinn_compiler as compiler;
pub use djinn_core as core;
pub use djinn_kernels as kernels;
pub use djinn_runtime as runtime;
