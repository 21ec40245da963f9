//! The plan compiler (to be written).
