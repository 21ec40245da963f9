//! The contract between the plan compiler and the executor.
//!
//! Everything both sides must agree on lives here and nowhere else:
//! the plan schema ([`plan`]), the model description with its block table
//! ([`model`]) and the model presets `--model` names ([`model_presets`]), the
//! GPU profile format ([`gpu`]), how a model directory on disk
//! is read ([`hf`]), how the activations region is carved ([`activations`]),
//! the verifier that re-checks every plan without trusting its author
//! ([`verify`]), and the limits on every file read from the outside
//! ([`limits`], read with [`fsio`]). The crate pulls in no CUDA and no
//! solver: the runtime can read and check plans without the compiler, and the
//! compiler can write them without a GPU.

pub mod activations;
pub mod fsio;
pub mod gpu;
pub mod hf;
pub mod limits;
pub mod model;
pub mod model_presets;
pub mod phase;
pub mod plan;
mod toml_error;
pub mod units;
pub mod verify;

pub use gpu::GpuProfile;
pub use model::{Architecture, Block, BlockKind, Dtype, ModelSpec, TensorEntry, TensorRole};
pub use plan::{Lane, Op, Phase, Placement, Plan, Step, FORMAT_VERSION};
