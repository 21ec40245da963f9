//! Kernels and their CPU twins (to be written).
