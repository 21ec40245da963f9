//! Integration tests: verifier (to be written).
