//! The CUDA backend (to be written).
