//! `djinn-profile`'s one error type.
//!
//! Like `djinn-exec`'s, each message is complete on its own (inner errors are
//! formatted into it, not chained), so the binary's `{:#}` prints every cause
//! once. "No GPU here" is its own variant: it is the expected outcome on a
//! machine without one, and the message says where to run instead.

use std::path::PathBuf;

use djinn_runtime::cuda::CudaError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("{0}")]
    Args(clap::Error),
    #[error("{0}")]
    Usage(String),
    #[error("--model {arg}: {message}")]
    Model { arg: String, message: String },
    #[error("no usable CUDA GPU: {0}; djinn-profile measures a real device, so run it on the GPU machine")]
    NoGpu(CudaError),
    #[error("CUDA error while {what}: {error}")]
    Cuda { what: String, error: CudaError },
    #[error("cannot lay out one layer of `{model}` in device memory for profiling: {message}")]
    Plan { model: String, message: String },
    #[error("cannot allocate {bytes} bytes of host memory for the host-layer measurement")]
    HostMemory { bytes: u64 },
    #[error("the host layer's forward pass failed: {0}")]
    HostLayer(String),
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
}

impl From<clap::Error> for ProfileError {
    fn from(e: clap::Error) -> ProfileError {
        ProfileError::Args(e)
    }
}

/// Names the measurement a CUDA error interrupted.
pub trait During<T> {
    fn during(self, what: &str) -> Result<T, ProfileError>;
}

impl<T> During<T> for Result<T, CudaError> {
    fn during(self, what: &str) -> Result<T, ProfileError> {
        self.map_err(|error| ProfileError::Cuda { what: what.to_string(), error })
    }
}
