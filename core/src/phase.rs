//! The two phases of a run: prefill (the prompt in one pass) and decode (one
//! token a pass).
//!
//! A plan's steps belong to one ([`crate::plan::Plan::phase`]) and a GPU
//! profile's block times were measured in one ([`crate::gpu::BlockTime`]).
//! One enum for both, so that the phase the compiler costs and the phase the
//! plan runs cannot be two types; in a profile it is written `prefill` /
//! `decode`.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    Prefill,
    Decode,
}

impl std::fmt::Display for PhaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PhaseName::Prefill => "prefill",
            PhaseName::Decode => "decode",
        })
    }
}
