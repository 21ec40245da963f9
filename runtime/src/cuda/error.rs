//! The CUDA backend's one error type.
//!
//! Every message says what was being done (which library, kernel, block,
//! region or step) and what was expected, because the person reading it is
//! usually on a machine they cannot debug interactively.

use cudarc::cublas::result::CublasError;
use cudarc::driver::DriverError;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("{lib} not found: {hint}")]
    LibraryMissing { lib: &'static str, hint: &'static str },

    #[error("{lib} lacks the symbol {symbol}; this djinn-exec needs CUDA 13.0 or newer libraries")]
    SymbolMissing { lib: &'static str, symbol: &'static str },

    #[error("no CUDA device: {detail}")]
    NoDevice { detail: String },

    #[error("CUDA driver call failed while {what}: {source}")]
    Driver { what: String, source: DriverError },

    #[error("cuBLAS call failed while {what}: {source}")]
    Cublas { what: String, source: CublasError },

    #[error("cuBLASLt call failed while {what}: {source}")]
    CublasLt { what: String, source: cudarc::cublaslt::result::CublasError },

    #[error("NVRTC could not compile kernels/cuda/{file} for {arch}: {message}")]
    Compile { file: &'static str, arch: String, message: String },

    #[error("kernel {name} is missing from the compiled module of kernels/cuda/{file}")]
    KernelMissing { name: &'static str, file: &'static str },

    #[error("{op}: operand {operand} (bytes {offset}..{end}) lies outside the {arena}-byte arena")]
    OutOfArena { op: &'static str, operand: &'static str, offset: u64, end: u64, arena: u64 },

    #[error("{op}: {message}")]
    BadOperands { op: &'static str, message: String },

    #[error("plan cannot run on the CUDA backend: {0}")]
    Plan(String),

    #[error("device memory budget: {0}")]
    Budget(String),

    #[error("cannot read the image of block {block}: {message}")]
    Weights { block: String, message: String },

    #[error("host_compute of block {block}: {message}")]
    HostCompute { block: String, message: String },

    #[error("pass: {0}")]
    Pass(String),

    #[error("cannot write trace {path}: {error}")]
    Trace { path: String, error: std::io::Error },
}

impl CudaError {
    /// Whether this means "no usable GPU on this machine" (no driver, no
    /// device, libraries too old), as opposed to a failure on one: what a
    /// test skips on and what djinn-profile reports as the machine's lack.
    pub fn is_absence(&self) -> bool {
        matches!(self, CudaError::LibraryMissing { .. } | CudaError::SymbolMissing { .. } | CudaError::NoDevice { .. })
    }
}

/// Attaches what was being done to a driver error.
pub(crate) trait DriverContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, CudaError>;
}

impl<T> DriverContext<T> for Result<T, DriverError> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, CudaError> {
        self.map_err(|source| CudaError::Driver { what: what(), source })
    }
}

impl<T> DriverContext<T> for Result<T, CublasError> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, CudaError> {
        self.map_err(|source| CudaError::Cublas { what: what(), source })
    }
}
