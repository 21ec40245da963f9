//! Integration tests: hf (to be written).
