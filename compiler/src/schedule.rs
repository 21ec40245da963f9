//! The prefetch schedule: the issue-ordered step lists of prefill and of the
//! decode loop body, with the dependencies of every step.
//!
//! Streamed layers `s_0 … s_{m-1}` (model order) go through `k` slots;
//! `slot(s_i) = i mod k`, the same in every pass, so a slot's occupants repeat
//! identically each token.
//!
//! **djinn** (prefetch as early as the slot frees):
//! * prefill: copies of `s_0 … s_{k-1}` are issued first; the copy of `s_i`
//!   (`i ≥ k`) waits for the compute of `s_{i-k}` (slot reuse) and is listed
//!   right after it; the compute of `s_i` waits for its copy. After the compute
//!   of each slot's last occupant comes the *prologue*: the copy of that slot's
//!   first occupant again, for decode iteration 0.
//! * decode body (software-pipelined): the computes of `s_0 … s_{k-1}` consume
//!   the copies issued by the previous iteration (or by prefill's prologue); the
//!   copies of `s_k …` work as in prefill; after the compute of each slot's last
//!   occupant, the copy of its first occupant for the *next* iteration.
//!
//! **Host compute** (djinn only): a subset `H` of the streamed layers is
//! computed in decode by the host CPU from its image in host memory
//! (`Work::HostCompute`, on the compute lane, no slot, no event). Prefill is
//! unchanged: every streamed layer is copied and computed on the GPU. Decode
//! copies only `D = S \ H` (model order `d_0 … d_{n-1}`), and assigns slots
//! over `D`: `slot(d_j) = j mod k`. Prefill's prologue therefore copies `D`'s
//! first `k` occupants: `d_j` into slot `j`, right after prefill's compute of
//! slot `j`'s *last prefill occupant* (the last `s_i` with `i mod k = j`), or
//! after prefill's compute of `d_j` itself when that comes later: the prologue
//! copy records `ready:d_j` again, and prefill's compute of `d_j` must wait on
//! its own copy, which a `wait` names as the latest earlier record.
//!
//! **sync** (the baseline): the copy of `s_i` is listed right before its
//! compute and also waits for the compute just before `s_i`, so the two lanes
//! never overlap; nothing crosses iterations.
//!
//! A copy is always listed after every step it depends on within its pass, so
//! the event it waits on is recorded earlier in the list: the executor can issue
//! the list in order. Dependencies on the previous pass point at the step that
//! produced the value there (the decode body position, and prefill's prologue
//! for iteration 0).

use djinn_core::plan::Strategy;

/// What one step does. Blocks are indices into `model.blocks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Copy {
        block: usize,
        slot: u64,
    },
    Compute {
        block: usize,
        slot: Option<u64>,
    },
    /// A streamed block's decode step run by the host CPU (compute lane, no slot).
    HostCompute {
        block: usize,
    },
}

impl Work {
    pub fn block(&self) -> usize {
        match *self {
            Work::Copy { block, .. } | Work::Compute { block, .. } | Work::HostCompute { block } => block,
        }
    }
    pub fn is_copy(&self) -> bool {
        matches!(self, Work::Copy { .. })
    }
}

/// Why a step waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DepKind {
    /// A compute reads the weights its copy wrote.
    Data,
    /// A copy overwrites a slot the previous occupant's compute read.
    SlotReuse,
    /// Sync strategy: a copy waits for the compute before the block it loads.
    Serialize,
    /// A prologue copy re-records the event an earlier compute of its pass
    /// waits on, so it is issued after that compute.
    EventReuse,
}

/// Which step a dependency points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepOn {
    /// A step of the same pass (its position in the list).
    Here(usize),
    /// A step of the previous pass: `body` in the previous decode iteration,
    /// `prefill` when the previous pass is prefill.
    Prev { body: usize, prefill: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dep {
    pub on: DepOn,
    pub kind: DepKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub work: Work,
    pub deps: Vec<Dep>,
}

/// The two step lists of a plan, in issue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub prefill: Vec<Item>,
    pub decode: Vec<Item>,
}

fn here(pos: usize, kind: DepKind) -> Dep {
    Dep { on: DepOn::Here(pos), kind }
}

/// Builds the program for `blocks` blocks computed in index order, of which
/// `streamed` (ascending) go through `slots` slots and `host` (ascending, a
/// subset of `streamed`, djinn only) are computed by the host CPU in decode.
pub fn build(blocks: usize, streamed: &[usize], host: &[usize], slots: u64, strategy: Strategy) -> Program {
    debug_assert!(streamed.windows(2).all(|w| w[0] < w[1]));
    debug_assert!(host.windows(2).all(|w| w[0] < w[1]) && host.iter().all(|b| streamed.contains(b)));
    match strategy {
        Strategy::Djinn | Strategy::StreamAll => djinn(blocks, streamed, host, slots as usize),
        Strategy::Sync => {
            debug_assert!(host.is_empty(), "the sync baseline never computes on the host");
            sync(blocks, streamed, slots as usize)
        }
    }
}

/// Position of each block in the streamed list.
fn stream_index(blocks: usize, streamed: &[usize]) -> Vec<Option<usize>> {
    let mut idx = vec![None; blocks];
    for (i, &b) in streamed.iter().enumerate() {
        idx[b] = Some(i);
    }
    idx
}

fn djinn(blocks: usize, streamed: &[usize], host: &[usize], k: usize) -> Program {
    let m = streamed.len();
    let idx = stream_index(blocks, streamed);
    // The layers decode copies, and each one's position among them.
    let copied: Vec<usize> = streamed.iter().copied().filter(|b| !host.contains(b)).collect();
    let n = copied.len();
    let didx = stream_index(blocks, &copied);
    let slot = |i: usize| (i % k) as u64;
    let copy = |i: usize| Work::Copy { block: streamed[i], slot: slot(i) };
    let dcopy = |j: usize| Work::Copy { block: copied[j], slot: slot(j) };

    // Prefill. The prologue copy of d_j (j < k) follows the compute of slot
    // j's last prefill occupant, or of d_j itself when that is later.
    let last_of_slot = |j: usize| (0..m).rev().find(|i| i % k == j).expect("j < n <= m");
    let prologue_after: Vec<usize> =
        (0..k.min(n)).map(|j| last_of_slot(j).max(idx[copied[j]].expect("copied layers stream"))).collect();
    let mut pre = Vec::new();
    let mut copy_pos = vec![usize::MAX; m];
    let mut compute_pos = vec![usize::MAX; m];
    let mut prologue_pos = vec![usize::MAX; k.min(n)];
    for (i, pos) in copy_pos.iter_mut().enumerate().take(k.min(m)) {
        *pos = pre.len();
        pre.push(Item { work: copy(i), deps: vec![] });
    }
    for (b, &ix) in idx.iter().enumerate() {
        let Some(i) = ix else {
            pre.push(Item { work: Work::Compute { block: b, slot: None }, deps: vec![] });
            continue;
        };
        let at = pre.len();
        compute_pos[i] = at;
        pre.push(Item {
            work: Work::Compute { block: b, slot: Some(slot(i)) },
            deps: vec![here(copy_pos[i], DepKind::Data)],
        });
        if i + k < m {
            copy_pos[i + k] = pre.len();
            pre.push(Item { work: copy(i + k), deps: vec![here(at, DepKind::SlotReuse)] });
        }
        for j in (0..k.min(n)).filter(|&j| prologue_after[j] == i) {
            let mut deps = vec![here(compute_pos[last_of_slot(j)], DepKind::SlotReuse)];
            if last_of_slot(j) < i {
                deps.push(here(at, DepKind::EventReuse));
            }
            prologue_pos[j] = pre.len();
            pre.push(Item { work: dcopy(j), deps });
        }
    }

    // Decode body: first pass with placeholders for the loop-carried positions.
    let mut body = Vec::new();
    let mut copy_pos = vec![usize::MAX; n];
    let mut next_iter_pos = vec![usize::MAX; k.min(n)];
    let mut carried = Vec::new(); // (body position of a compute of d_j, j < k)
    for b in 0..blocks {
        if idx[b].is_none() {
            body.push(Item { work: Work::Compute { block: b, slot: None }, deps: vec![] });
            continue;
        }
        let Some(j) = didx[b] else {
            body.push(Item { work: Work::HostCompute { block: b }, deps: vec![] });
            continue;
        };
        let at = body.len();
        let deps = if j < k {
            carried.push((at, j));
            vec![]
        } else {
            vec![here(copy_pos[j], DepKind::Data)]
        };
        body.push(Item { work: Work::Compute { block: b, slot: Some(slot(j)) }, deps });
        let next = if j + k < n { j + k } else { j % k };
        let pos = body.len();
        body.push(Item { work: dcopy(next), deps: vec![here(at, DepKind::SlotReuse)] });
        if j + k < n {
            copy_pos[next] = pos;
        } else {
            next_iter_pos[next] = pos;
        }
    }
    for (at, j) in carried {
        let on = DepOn::Prev { body: next_iter_pos[j], prefill: prologue_pos[j] };
        body[at].deps.push(Dep { on, kind: DepKind::Data });
    }
    Program { prefill: pre, decode: body }
}

fn sync(blocks: usize, streamed: &[usize], k: usize) -> Program {
    let m = streamed.len();
    let idx = stream_index(blocks, streamed);
    // The last occupant of each slot, for the (redundant but true) slot-reuse
    // dependency of decode's first copies on the previous pass.
    let last_of_slot = |j: usize| (0..m).filter(|i| i % k == j).max();
    let pass = |prev_compute: &dyn Fn(usize) -> Option<DepOn>| {
        let mut list: Vec<Item> = Vec::new();
        let mut compute_pos = vec![usize::MAX; blocks];
        for b in 0..blocks {
            if let Some(i) = idx[b] {
                let slot = (i % k) as u64;
                let mut deps = Vec::new();
                if b > 0 {
                    deps.push(here(compute_pos[b - 1], DepKind::Serialize));
                }
                if i >= k {
                    deps.push(here(compute_pos[streamed[i - k]], DepKind::SlotReuse));
                } else if let Some(on) = prev_compute(i % k) {
                    deps.push(Dep { on, kind: DepKind::SlotReuse });
                }
                let at = list.len();
                list.push(Item { work: Work::Copy { block: streamed[i], slot }, deps });
                compute_pos[b] = list.len();
                list.push(Item {
                    work: Work::Compute { block: b, slot: Some(slot) },
                    deps: vec![here(at, DepKind::Data)],
                });
            } else {
                compute_pos[b] = list.len();
                list.push(Item { work: Work::Compute { block: b, slot: None }, deps: vec![] });
            }
        }
        (list, compute_pos)
    };
    let (prefill, pre_pos) = pass(&|_| None);
    // Positions are identical in every pass of the sync schedule.
    let (decode, _) =
        pass(&|j| last_of_slot(j).map(|i| DepOn::Prev { body: pre_pos[streamed[i]], prefill: pre_pos[streamed[i]] }));
    Program { prefill, decode }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders a list as `c3 C1@0<c0 …` for compact assertions: `cB@S` a copy of
    /// block B into slot S, `CB` a compute, `HB` a host compute, `<p` a dependency on position p of
    /// this pass, `<<p/q` on body position p / prefill position q of the previous pass.
    fn render(list: &[Item]) -> String {
        let mut out = Vec::new();
        for it in list {
            let mut s = match it.work {
                Work::Copy { block, slot } => format!("c{block}@{slot}"),
                Work::Compute { block, slot: Some(s) } => format!("C{block}@{s}"),
                Work::Compute { block, slot: None } => format!("C{block}"),
                Work::HostCompute { block } => format!("H{block}"),
            };
            for d in &it.deps {
                match d.on {
                    DepOn::Here(p) => s.push_str(&format!("<{p}")),
                    DepOn::Prev { body, prefill } => s.push_str(&format!("<<{body}/{prefill}")),
                }
            }
            out.push(s);
        }
        out.join(" ")
    }

    // Blocks: 0 embed, 1..=4 layers 0..3, 5 norm, 6 head. Streamed: layers 0, 1, 3
    // (blocks 1, 2, 4) through 2 slots: s0→slot 0, s1→slot 1, s2→slot 0.

    #[test]
    fn djinn_prefill_issues_first_copies_then_follows_each_slot_release() {
        let p = build(7, &[1, 2, 4], &[], 2, Strategy::Djinn);
        // 0 c1@0, 1 c2@1, 2 C0, 3 C1 (waits copy 0), 4 c4@0 (waits C1: slot reuse),
        // 5 C2 (waits 1), 6 c2@1 prologue (waits C2), 7 C3, 8 C4 (waits 4),
        // 9 c1@0 prologue (waits C4), 10 C5, 11 C6.
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c4@0<3 C2@1<1 c2@1<5 C3 C4@0<4 c1@0<8 C5 C6");
    }

    #[test]
    fn djinn_decode_body_consumes_the_previous_pass_copies() {
        let p = build(7, &[1, 2, 4], &[], 2, Strategy::Djinn);
        // The computes of s0 (block 1) and s1 (block 2) wait on the previous
        // iteration's copies at body positions 7 and 4, or on prefill's prologue
        // copies at 9 and 6.
        assert_eq!(render(&p.decode), "C0 C1@0<<7/9 c4@0<1 C2@1<<4/6 c2@1<3 C3 C4@0<2 c1@0<6 C5 C6");
    }

    #[test]
    fn sync_copies_wait_for_the_compute_before_their_block() {
        let p = build(7, &[1, 2, 4], &[], 2, Strategy::Sync);
        // c4@0 waits on C3 (position 5, serialize) and on C1 (position 2, slot reuse).
        assert_eq!(render(&p.prefill), "C0 c1@0<0 C1@0<1 c2@1<2 C2@1<3 C3 c4@0<5<2 C4@0<6 C5 C6");
        // Decode's first copies also carry the slot's last occupant of the previous pass.
        assert_eq!(render(&p.decode), "C0 c1@0<0<<7/7 C1@0<1 c2@1<2<<4/4 C2@1<3 C3 c4@0<5<2 C4@0<6 C5 C6");
    }

    #[test]
    fn host_layer_leaves_decode_copying_the_rest_through_the_same_slots() {
        // Host [2]: decode copies D = [1, 4], d0 = block 1 → slot 0, d1 = block 4 → slot 1.
        let p = build(7, &[1, 2, 4], &[2], 2, Strategy::Djinn);
        // Prefill as without host layers, but the prologues copy D's first
        // occupants. Block 1 into slot 0 follows C4 (slot 0's last prefill
        // occupant, 7). Block 4 into slot 1 may follow C2 (slot 1's last, 5),
        // but not before prefill's own C4 at 7 has consumed ready:4: both at 8, 9.
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c4@0<3 C2@1<1 C3 C4@0<4 c1@0<7 c4@1<5<7 C5 C6");
        // Decode: each slot has one occupant, so its next-iteration copy follows
        // its compute (c1@0 at 2, c4@1 at 6); iteration 0 reads prefill's 8 and 9.
        // Block 2 is a host compute with no dependency.
        assert_eq!(render(&p.decode), "C0 C1@0<<2/8 c1@0<1 H2 C3 C4@1<<6/9 c4@1<5 C5 C6");
    }

    #[test]
    fn host_layer_among_more_copied_layers_than_slots() {
        // Blocks 0 embed, 1..=5 layers, 6 norm, 7 head; all 5 layers stream
        // through 2 slots, block 3 is a host layer: D = [1, 2, 4, 5] → slots 0, 1, 0, 1.
        let p = build(8, &[1, 2, 3, 4, 5], &[3], 2, Strategy::Djinn);
        // Prefill slots follow S (1@0 2@1 3@0 4@1 5@0): c3 after C1 (4), c4 after
        // C2 (6), c5 after C3 (8); slot 1's last prefill occupant is block 4:
        // prologue c2@1 after C4 (10); slot 0's is block 5: prologue c1@0 after C5 (12).
        assert_eq!(
            render(&p.prefill),
            "c1@0 c2@1 C0 C1@0<0 c3@0<3 C2@1<1 c4@1<5 C3@0<4 c5@0<7 C4@1<6 c2@1<9 C5@0<8 c1@0<11 C6 C7"
        );
        // Decode slots follow D: c4@0 after C1 (2), c5@1 after C2 (4), H3 (5),
        // C4 reads 2, then the next iteration's c1@0 (7); C5 reads 4, then c2@1 (9).
        assert_eq!(render(&p.decode), "C0 C1@0<<7/12 c4@0<1 C2@1<<9/10 c5@1<3 H3 C4@0<2 c1@0<6 C5@1<4 c2@1<8 C6 C7");
    }

    #[test]
    fn a_prologue_copy_follows_its_blocks_own_prefill_compute() {
        // Host [1]: D = [2, 4], d0 = block 2 → slot 0, d1 = block 4 → slot 1.
        // Slot 0's last prefill occupant is block 4 (s2), slot 1's is block 2
        // (s1). The prologue of block 4 into slot 1 could follow C2, but prefill's
        // C4 (at 7) still waits on ready:4 from its own copy into slot 0: the
        // prologue comes after C4 (EventReuse) as well as after C2 (slot reuse).
        let p = build(7, &[1, 2, 4], &[1], 2, Strategy::Djinn);
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c4@0<3 C2@1<1 C3 C4@0<4 c2@0<7 c4@1<5<7 C5 C6");
        assert_eq!(render(&p.decode), "C0 H1 C2@0<<3/8 c2@0<2 C3 C4@1<<6/9 c4@1<5 C5 C6");
    }

    #[test]
    fn all_streamed_layers_on_the_host_leave_decode_without_copies() {
        let p = build(7, &[1, 2, 4], &[1, 2, 4], 2, Strategy::Djinn);
        // Prefill has no prologue: decode copies nothing.
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c4@0<3 C2@1<1 C3 C4@0<4 C5 C6");
        assert_eq!(render(&p.decode), "C0 H1 H2 C3 H4 C5 C6");
    }

    #[test]
    fn every_in_pass_dependency_points_backwards() {
        for strategy in Strategy::ALL {
            for k in 2..=4u64 {
                let streamed: Vec<usize> = (1..=9).collect();
                let hosts: &[&[usize]] =
                    if strategy == Strategy::Sync { &[&[]] } else { &[&[], &[5], &[1, 9], &[2, 3, 4, 6, 7, 8]] };
                for host in hosts {
                    let p = build(12, &streamed, host, k, strategy);
                    for list in [&p.prefill, &p.decode] {
                        for (pos, it) in list.iter().enumerate() {
                            for d in &it.deps {
                                if let DepOn::Here(q) = d.on {
                                    assert!(q < pos, "{strategy:?} k={k} host {host:?}: {pos} depends on later {q}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
