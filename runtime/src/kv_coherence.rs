//! Which KV-cache rows of each layer are valid on the device and on the host.
//!
//! A layer computed in two places (the device in prefill, the host in a
//! `host_compute` decode step) appends its KV rows where it runs. Before a
//! computation at position `pos0` on either side, rows `0..pos0` must be
//! valid there; [`KvCoherence`] says which rows to fetch from the other
//! side, and records what the computation writes (rows `pos0..pos0+n` become
//! valid on its side only). It is bookkeeping, not policy: the plan says
//! where each step runs; this only follows the data.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCoherence {
    /// Per layer: rows `0..n` are valid on the device / on the host.
    device: Vec<u64>,
    host: Vec<u64>,
}

/// Where a computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Device,
    Host,
}

impl KvCoherence {
    /// Nothing valid anywhere: the first pass of a sequence starts at position 0.
    pub fn new(layers: usize) -> KvCoherence {
        KvCoherence { device: vec![0; layers], host: vec![0; layers] }
    }

    /// Layer `layer` is about to compute `n` tokens at `pos0` on `side`:
    /// returns the rows to fetch there from the other side first (empty when
    /// none), and records the rows the computation writes.
    pub fn compute(&mut self, layer: usize, side: Side, pos0: u64, n: u64) -> Range<u64> {
        let (here, there) = match side {
            Side::Device => (&mut self.device[layer], &mut self.host[layer]),
            Side::Host => (&mut self.host[layer], &mut self.device[layer]),
        };
        let fetch = (*here).min(pos0)..pos0;
        *here = pos0 + n;
        *there = (*there).min(pos0);
        fetch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefill_on_the_device_then_decode_on_the_host_fetches_the_prompt_rows_once() {
        let mut kv = KvCoherence::new(2);
        assert_eq!(kv.compute(1, Side::Device, 0, 5), 0..0, "prefill needs nothing");
        assert_eq!(kv.compute(1, Side::Host, 5, 1), 0..5, "first decode step: the prompt's rows");
        assert_eq!(kv.compute(1, Side::Host, 6, 1), 6..6, "then the host has them all");
        assert_eq!(kv.compute(0, Side::Device, 0, 5), 0..0, "other layers are independent");
    }

    #[test]
    fn moving_back_to_the_device_fetches_only_the_rows_the_host_wrote() {
        let mut kv = KvCoherence::new(1);
        kv.compute(0, Side::Device, 0, 4);
        kv.compute(0, Side::Host, 4, 1);
        kv.compute(0, Side::Host, 5, 1);
        assert_eq!(kv.compute(0, Side::Device, 6, 1), 4..6);
        assert_eq!(kv.compute(0, Side::Host, 7, 1), 6..7, "the device wrote row 6");
    }

    #[test]
    fn a_new_sequence_invalidates_both_sides() {
        let mut kv = KvCoherence::new(1);
        kv.compute(0, Side::Device, 0, 8);
        kv.compute(0, Side::Host, 8, 1);
        assert_eq!(kv.compute(0, Side::Device, 0, 3), 0..0, "a prefill at 0 rewrites from row 0");
        assert_eq!(kv.compute(0, Side::Host, 3, 1), 0..3, "so the host's old rows are stale");
    }
}
