//! Integration tests: runtime_cpu (to be written).
