//! `djinn-exec`'s library: replays a Djinn plan.
//!
//! The plan decides; this crate executes. [`weights`] checks a checkpoint
//! against the plan and packs block images; [`replay`] walks the plan's steps
//! and drives a [`backend::Backend`]; [`generate`] runs the prompt and the
//! token loop over it; [`forward`] is the one Llama forward pass, written
//! against [`ops::Ops`]; the [`cpu`] backend implements it with the CPU twins
//! of the kernels, the [`cuda`] backend with the `.cu` kernels; [`tokenizer`]
//! turns text into ids and streams ids back into text; [`exec`] is the
//! command line, [`interactive`] its chat loop.
//!
//! This crate executes plans and decides nothing, so it does not depend on
//! the compiler; `djinn-profile` (the `djinn-profiler` crate), which needs
//! both, measures a GPU with this crate's forward pass and kernels.

pub mod backend;
pub mod chat;
pub mod cpu;
pub mod cuda;
pub mod exec;
pub mod forward;
pub mod generate;
pub mod host;
pub mod interactive;
pub mod ops;
pub mod replay;
pub mod report;
pub mod session;
pub mod stop_text;
pub mod tokenizer;
pub mod weights;
