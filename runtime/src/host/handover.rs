//! Which activations cross the bus around the plan's `host_compute` steps.
//!
//! The CUDA backend's host lane computes in its own copy of the arena, so an
//! activation one side writes is stale on the other until it is handed over.
//! These may cross: the residual stream `x`, which every block but the
//! embedding reads; `gate` (`silu(gate)·up`), which a layer's `gate_up` block
//! writes and its `down` block reads — so the fine table's two MLP parts may
//! run on different sides (a device `gate_up` then a host `down`, or the
//! reverse), as the compiler chooses by the cost model; and the final norm's
//! row `xn`, which the LM head reads when the host holds it. The logits an LM
//! head computed on the host never cross: the backend reads them there
//! ([`Handover::logits_on_host`]).
//!
//! [`Handover`] is the bookkeeping alone, pure and tested here: for each
//! activation, which side last wrote it. Before a block runs on one side, the
//! activations it reads whose newest value is on the other side come across
//! ([`Handover::before`]); after it, what it wrote is newest on its side
//! ([`Handover::after`]). A run of consecutive host blocks thus hands `x`
//! over once each way, and `gate` crosses only when the parts are split.

use djinn_core::model::BlockKind;

/// An activation that may cross between the device and the host lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// `[tokens, hidden]` f32: the residual stream.
    X,
    /// `[tokens, intermediate]` model dtype: the MLP's gated product, `down`'s input.
    Gate,
    /// `[1, hidden]` model dtype: the final norm of the last position, the LM head's input.
    Xn,
    /// `[vocab]` f32: the LM head's output (read by the backend, never handed over).
    Logits,
}

/// Where a block runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Device,
    Host,
}

/// The activations `kind` reads and writes (of those that may cross).
fn reads_writes(kind: BlockKind) -> (&'static [Act], &'static [Act]) {
    use Act::*;
    match kind {
        BlockKind::Embedding => (&[], &[X]),
        BlockKind::Layer | BlockKind::Mlp => (&[X], &[X, Gate]),
        BlockKind::Attention => (&[X], &[X]),
        BlockKind::GateUp => (&[X], &[Gate]),
        BlockKind::Down => (&[X, Gate], &[X]),
        BlockKind::FinalNorm => (&[X], &[Xn]),
        BlockKind::LmHead => (&[Xn], &[Logits]),
    }
}

/// Per activation, the side holding its newest value, or `None` while both
/// sides hold the same (at the start, and after a hand-over).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    x: Option<Side>,
    gate: Option<Side>,
    xn: Option<Side>,
    logits: Option<Side>,
}

impl Handover {
    pub fn new() -> Handover {
        Handover::default()
    }

    fn newest(&mut self, act: Act) -> &mut Option<Side> {
        match act {
            Act::X => &mut self.x,
            Act::Gate => &mut self.gate,
            Act::Xn => &mut self.xn,
            Act::Logits => &mut self.logits,
        }
    }

    /// Before a `kind` block runs on `side`: the activations to bring to
    /// `side` first (their newest value is on the other side), in a fixed
    /// order; they are taken to be handed over.
    pub fn before(&mut self, kind: BlockKind, side: Side) -> Vec<Act> {
        let (reads, _) = reads_writes(kind);
        let mut cross = Vec::new();
        for &act in reads {
            let newest = self.newest(act);
            if newest.is_some_and(|s| s != side) {
                *newest = None;
                cross.push(act);
            }
        }
        cross
    }

    /// After a `kind` block ran on `side`: what it wrote is newest there.
    pub fn after(&mut self, kind: BlockKind, side: Side) {
        let (_, writes) = reads_writes(kind);
        for &act in writes {
            *self.newest(act) = Some(side);
        }
    }

    /// The activations whose newest value is on the host.
    pub fn on_host(&self) -> Vec<Act> {
        [(Act::X, self.x), (Act::Gate, self.gate), (Act::Xn, self.xn), (Act::Logits, self.logits)]
            .into_iter()
            .filter(|(_, s)| *s == Some(Side::Host))
            .map(|(a, _)| a)
            .collect()
    }

    /// Whether the newest logits are the host's (its LM head ran last).
    pub fn logits_on_host(&self) -> bool {
        self.logits == Some(Side::Host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BlockKind::*;
    use Side::*;

    /// Runs `steps` and returns, per step, what crossed before it.
    fn run(steps: &[(BlockKind, Side)]) -> Vec<Vec<Act>> {
        let mut h = Handover::new();
        steps
            .iter()
            .map(|&(kind, side)| {
                let cross = h.before(kind, side);
                h.after(kind, side);
                cross
            })
            .collect()
    }

    #[test]
    fn a_run_of_host_mlps_hands_x_over_once_each_way() {
        let crossed = run(&[(Attention, Device), (Mlp, Host), (Attention, Device), (Mlp, Host), (Mlp, Host)]);
        assert_eq!(crossed, [vec![], vec![Act::X], vec![Act::X], vec![Act::X], vec![]]);
    }

    #[test]
    fn a_device_gate_up_then_a_host_down_hands_gate_and_x_down_then_x_up() {
        let crossed = run(&[(Attention, Device), (GateUp, Device), (Down, Host), (Attention, Device)]);
        assert_eq!(crossed, [vec![], vec![], vec![Act::X, Act::Gate], vec![Act::X]]);
    }

    #[test]
    fn a_host_gate_up_then_a_device_down_hands_gate_up() {
        let crossed = run(&[(Attention, Device), (GateUp, Host), (Down, Device), (Attention, Device)]);
        // x went down for the gate/up; the device's x is still current (gate/up does not write it).
        assert_eq!(crossed, [vec![], vec![Act::X], vec![Act::Gate], vec![]]);
    }

    #[test]
    fn both_parts_on_the_host_never_move_gate() {
        let crossed = run(&[(Attention, Device), (GateUp, Host), (Down, Host), (Attention, Device)]);
        assert_eq!(crossed, [vec![], vec![Act::X], vec![], vec![Act::X]]);
    }

    #[test]
    fn a_host_embedding_sends_x_up_and_brings_nothing_down() {
        let mut h = Handover::new();
        assert!(h.before(Embedding, Host).is_empty());
        h.after(Embedding, Host);
        assert_eq!(h.on_host(), [Act::X]);
        assert_eq!(h.before(Attention, Device), [Act::X]);
        h.after(Attention, Device);
        assert!(h.on_host().is_empty());
    }

    #[test]
    fn a_held_lm_head_takes_the_norms_row_down_and_keeps_its_logits() {
        let mut h = Handover::new();
        for (kind, side) in [(Attention, Device), (Mlp, Device), (FinalNorm, Device)] {
            assert!(h.before(kind, side).is_empty());
            h.after(kind, side);
        }
        assert_eq!(h.before(LmHead, Host), [Act::Xn]);
        h.after(LmHead, Host);
        assert!(h.logits_on_host());
        // The next pass's device LM head (a plan never mixes, but the books stay right) takes them back.
        assert!(h.before(LmHead, Device).is_empty());
        h.after(LmHead, Device);
        assert!(!h.logits_on_host());
    }

    #[test]
    fn a_stale_gate_on_the_device_is_not_sent_when_the_device_rewrites_it() {
        // Host MLP of layer 0 leaves the host's gate newest; layer 1's device gate_up
        // rewrites it, so its down needs nothing from the host.
        let crossed = run(&[(Mlp, Host), (Attention, Device), (GateUp, Device), (Down, Device), (Attention, Device)]);
        assert_eq!(crossed, [vec![], vec![Act::X], vec![], vec![], vec![]]);
    }
}
