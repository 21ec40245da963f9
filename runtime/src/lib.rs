//! The executor (to be written).
