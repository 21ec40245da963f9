//! `djinn-exec`'s library: replays a Djinn plan.
//!
//! The plan decides; this crate executes. [`replay`] walks the plan's steps
//! and drives a [`backend::Backend`]; [`forward`] is the one Llama forward
//! pass, written against [`ops::Ops`]; the CPU backend implements it with the
//! CPU twins of the kernels, the CUDA backend with the `.cu` kernels.

pub mod backend;
pub mod cuda;
pub mod ops;
