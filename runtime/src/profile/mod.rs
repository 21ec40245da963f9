//! `djinn-profile`: measures this machine's GPU and writes the profile that
//! `djinn-compile --gpu FILE.toml` plans from.
//!
//! The pure parts, testable without a GPU: timing summaries ([`stats`]), the
//! copy model ([`copy_fit`]), random weights ([`random`]), the link
//! ([`pcie`]), what a run measures ([`measurements`]) and the profile it
//! implies with its commented TOML ([`assemble`]), and the one-layer plan the
//! block timings run under ([`bench_plan`]).

pub mod assemble;
pub mod bench_plan;
pub mod copy_fit;
pub mod date;
pub mod error;
pub mod measurements;
pub mod pcie;
pub mod random;
pub mod stats;

pub use self::error::ProfileError;
