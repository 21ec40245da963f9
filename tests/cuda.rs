//! Integration tests: cuda (to be written).
