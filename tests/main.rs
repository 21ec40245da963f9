//! The one integration-test binary. Each module tests one part end to end.

mod compiler;
mod cuda;
mod hf;
mod plan_fuzz;
mod profile;
mod quickstart;
mod runtime_cpu;
mod skip;
mod support;
mod verifier;
