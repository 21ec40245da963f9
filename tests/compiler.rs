//! Integration tests: compiler (to be written).
