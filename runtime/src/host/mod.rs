//! Host memory that both backends compute in: the CPU backend's whole arena,
//! and the CUDA backend's host lane (the plan's `host_compute` steps).
//!
//! Both run the one forward pass over a host buffer laid out like the device
//! arena — so every activation and KV-cache offset of the plan means the same
//! bytes — extended past the arena's end by the packed image of each
//! host-computed block ([`HostImages`]). The buffer is a lazily zeroed
//! anonymous mapping ([`HostArena`]): an arena sized for a large GPU budget
//! costs only the pages that are touched, and the images sit on transparent
//! huge pages so the host lane streams them without a TLB miss per 4 KiB.
//! On the CUDA backend the images' range is also page-locked for the copy
//! engine, so a host-computed block is held once in host memory, for the
//! CPU's decode steps and for prefill's copies alike.

mod arena;
mod handover;
mod images;

pub use arena::{HostArena, ARENA_ALIGN, HUGE_PAGE};
pub use handover::{Act, Handover, Side};
pub use images::HostImages;
