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
//! **Warm copies** ([`Program::warm`]): prefill's leading copies that depend
//! on nothing (djinn's copies of `s_0 … s_{k-1}`; sync's first copy waits for
//! the compute before it, so sync has none) are issued by the executor before
//! the pass, at load and between requests: they are not on the TTFT path.
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
    /// `prefill` when the previous pass is prefill. `body: None`: the body never
    /// produces the value (a pinned slot's layer), so every iteration reads
    /// prefill's step (`wait_prev` binds to the latest record before the pass).
    Prev { body: Option<usize>, prefill: usize },
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
    /// How many of prefill's leading items are warm copies (issued before the pass).
    pub warm: usize,
}

impl Program {
    /// Prefill's leading copies that depend on nothing: those that can be warm.
    pub fn warmable(&self) -> usize {
        self.prefill.iter().take_while(|it| it.work.is_copy() && it.deps.is_empty()).count()
    }
}

fn here(pos: usize, kind: DepKind) -> Dep {
    Dep { on: DepOn::Here(pos), kind }
}

/// Builds the program for `blocks` blocks computed in index order, of which
/// `streamed` (ascending) go through `slots` slots, `held` stay in host memory
/// and are computed by the host CPU in every pass (djinn only), and `host`
/// (ascending, a subset of `streamed`, djinn only) are computed by the host CPU in decode;
/// `pinned` slots keep one copied layer through decode ([`decode_occupants`]).
/// Every copy that can be warm is ([`Program::warmable`]).
pub fn build(
    blocks: usize,
    streamed: &[usize],
    held: &[usize],
    host: &[usize],
    slots: u64,
    pinned: usize,
    strategy: Strategy,
) -> Program {
    debug_assert!(streamed.windows(2).all(|w| w[0] < w[1]));
    debug_assert!(host.windows(2).all(|w| w[0] < w[1]) && host.iter().all(|b| streamed.contains(b)));
    debug_assert!(held.iter().all(|b| !streamed.contains(b)));
    let mut program = match strategy {
        Strategy::Djinn | Strategy::StreamAll => djinn(blocks, streamed, host, slots as usize, pinned),
        Strategy::Sync => {
            debug_assert!(host.is_empty() && held.is_empty(), "the sync baseline never computes on the host");
            sync(blocks, streamed, slots as usize)
        }
    };
    // A held block is computed by the host in every pass, in its model position.
    for item in program.prefill.iter_mut().chain(program.decode.iter_mut()) {
        if let Work::Compute { block, slot: None } = item.work {
            if held.contains(&block) {
                item.work = Work::HostCompute { block };
            }
        }
    }
    program.warm = program.warmable();
    program
}

/// Position of each block in the streamed list.
fn stream_index(blocks: usize, streamed: &[usize]) -> Vec<Option<usize>> {
    let mut idx = vec![None; blocks];
    for (i, &b) in streamed.iter().enumerate() {
        idx[b] = Some(i);
    }
    idx
}

fn djinn(blocks: usize, streamed: &[usize], host: &[usize], k: usize, pinned: usize) -> Program {
    let m = streamed.len();
    let idx = stream_index(blocks, streamed);
    let slot = |i: usize| (i % k) as u64;
    let copy = |i: usize| Work::Copy { block: streamed[i], slot: slot(i) };
    // Each slot's last prefill occupant (a block), and decode's occupants of each slot.
    let last_of_slot: Vec<Option<usize>> = (0..k).map(|q| (0..m).rev().find(|i| i % k == q)).collect();
    let last_block: Vec<Option<usize>> = last_of_slot.iter().map(|i| i.map(|i| streamed[i])).collect();
    let copied: Vec<usize> = streamed.iter().copied().filter(|b| !host.contains(b)).collect();
    let occupants = decode_occupants(&copied, &last_block, pinned);
    let mut decode_slot = vec![None; blocks];
    for (q, occ) in occupants.iter().enumerate() {
        for (j, &b) in occ.iter().enumerate() {
            decode_slot[b] = Some((q, j));
        }
    }

    // Prefill. A slot whose first decode occupant is not its last prefill
    // occupant gets a prologue copy of it, after the compute of that last
    // occupant (slot reuse) and of the block itself when that is later (its
    // own prefill compute waits on `ready:<block>`, which the prologue re-records).
    let prologue_after: Vec<Option<usize>> = (0..k)
        .map(|q| {
            let first = *occupants[q].first()?;
            let last = last_of_slot[q]?;
            (streamed[last] != first).then(|| last.max(idx[first].expect("copied layers stream")))
        })
        .collect();
    let mut pre = Vec::new();
    let mut copy_pos = vec![usize::MAX; m];
    let mut compute_pos = vec![usize::MAX; m];
    // Where iteration 0 finds each slot's first decode occupant: its prologue copy, or
    // its own prefill copy when it is the slot's last prefill occupant.
    let mut first_copy_pos = vec![usize::MAX; k];
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
        for q in (0..k).filter(|&q| prologue_after[q] == Some(i)) {
            let last = last_of_slot[q].expect("a prologue follows a last occupant");
            let mut deps = vec![here(compute_pos[last], DepKind::SlotReuse)];
            if last < i {
                deps.push(here(at, DepKind::EventReuse));
            }
            first_copy_pos[q] = pre.len();
            pre.push(Item { work: Work::Copy { block: occupants[q][0], slot: q as u64 }, deps });
        }
    }
    for q in (0..k).filter(|&q| prologue_after[q].is_none() && !occupants[q].is_empty()) {
        first_copy_pos[q] = copy_pos[last_of_slot[q].expect("the first occupant is the last prefill one")];
    }

    // Decode body. A slot with several occupants rotates them: after the compute
    // of each, the copy of the next (of the first, for the next iteration, after
    // the last). A slot with one occupant is pinned: it keeps what prefill left
    // there, and the body never copies into it.
    let mut body = Vec::new();
    let mut copy_pos = vec![usize::MAX; blocks];
    let mut next_iter_pos: Vec<Option<usize>> = vec![None; k];
    let mut carried = Vec::new(); // (body position of the compute of a slot's first occupant, slot)
    for b in 0..blocks {
        if idx[b].is_none() {
            body.push(Item { work: Work::Compute { block: b, slot: None }, deps: vec![] });
            continue;
        }
        let Some((q, j)) = decode_slot[b] else {
            body.push(Item { work: Work::HostCompute { block: b }, deps: vec![] });
            continue;
        };
        let occ = &occupants[q];
        let at = body.len();
        let deps = if j == 0 {
            carried.push((at, q));
            vec![]
        } else {
            vec![here(copy_pos[b], DepKind::Data)]
        };
        body.push(Item { work: Work::Compute { block: b, slot: Some(q as u64) }, deps });
        if occ.len() > 1 {
            let next = occ[(j + 1) % occ.len()];
            let pos = body.len();
            body.push(Item {
                work: Work::Copy { block: next, slot: q as u64 },
                deps: vec![here(at, DepKind::SlotReuse)],
            });
            if j + 1 < occ.len() {
                copy_pos[next] = pos;
            } else {
                next_iter_pos[q] = Some(pos);
            }
        }
    }
    for (at, q) in carried {
        let on = DepOn::Prev { body: next_iter_pos[q], prefill: first_copy_pos[q] };
        body[at].deps.push(Dep { on, kind: DepKind::Data });
    }
    Program { prefill: pre, decode: body, warm: 0 }
}

/// Decode's occupants of each slot, in model order, for the `copied` layers
/// (model order) given each slot's last prefill occupant.
///
/// With no more copied layers than slots, every copied layer gets a slot of
/// its own. Otherwise `pinned` slots (at most all but one) each keep one
/// layer for the whole decode loop, and the other copied layers rotate
/// through the remaining slots, round-robin in model order. A pinned slot
/// prefers the layer that prefill leaves in it (the slot then needs no
/// prologue copy); further pinned layers are the latest copied ones.
pub fn decode_occupants(copied: &[usize], last_of_slot: &[Option<usize>], pinned: usize) -> Vec<Vec<usize>> {
    let k = last_of_slot.len();
    let n = copied.len();
    let pinned = if n <= k { n } else { pinned.min(k - 1) };
    let mut occupants: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut taken = vec![false; n];
    // 1. Layers prefill leaves in their slot, latest first.
    let mut by_lateness: Vec<usize> =
        (0..k).filter(|&q| last_of_slot[q].is_some_and(|b| copied.contains(&b))).collect();
    by_lateness.sort_by_key(|&q| std::cmp::Reverse(last_of_slot[q]));
    let mut pins = 0;
    for q in by_lateness {
        if pins == pinned {
            break;
        }
        let b = last_of_slot[q].expect("filtered");
        occupants[q].push(b);
        taken[copied.iter().position(|&c| c == b).expect("filtered")] = true;
        pins += 1;
    }
    // 2. More pinned layers, latest first, into the lowest free slots.
    for j in (0..n).rev() {
        if pins == pinned {
            break;
        }
        if taken[j] {
            continue;
        }
        let q = (0..k).find(|&q| occupants[q].is_empty()).expect("fewer pins than slots");
        occupants[q].push(copied[j]);
        taken[j] = true;
        pins += 1;
    }
    // 3. The rest rotate through the free slots.
    let free: Vec<usize> = (0..k).filter(|&q| occupants[q].is_empty()).collect();
    for (r, j) in (0..n).filter(|&j| !taken[j]).enumerate() {
        occupants[free[r % free.len()]].push(copied[j]);
    }
    occupants
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
    let (decode, _) = pass(&|j| {
        last_of_slot(j).map(|i| DepOn::Prev { body: Some(pre_pos[streamed[i]]), prefill: pre_pos[streamed[i]] })
    });
    Program { prefill, decode, warm: 0 }
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
                    DepOn::Prev { body: Some(body), prefill } => s.push_str(&format!("<<{body}/{prefill}")),
                    DepOn::Prev { body: None, prefill } => s.push_str(&format!("<<-/{prefill}")),
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
        let p = build(7, &[1, 2, 4], &[], &[], 2, 0, Strategy::Djinn);
        // 0 c1@0, 1 c2@1, 2 C0, 3 C1 (waits copy 0), 4 c4@0 (waits C1: slot reuse),
        // 5 C2 (waits 1), 6 C3, 7 C4 (waits 4), 8 c1@0 prologue (waits C4), 9 C5, 10 C6.
        // Decode keeps block 2 in slot 1 (its only decode occupant, and what
        // prefill leaves there): no prologue copy for slot 1.
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c4@0<3 C2@1<1 C3 C4@0<4 c1@0<7 C5 C6");
    }

    #[test]
    fn djinn_decode_body_consumes_the_previous_pass_copies() {
        let p = build(7, &[1, 2, 4], &[], &[], 2, 0, Strategy::Djinn);
        // Slot 0 rotates blocks 1 and 4: the compute of block 1 waits on the
        // previous iteration's copy at body position 6, or on prefill's prologue
        // at 8. Slot 1 is pinned to block 2: no copy into it, and every
        // iteration's compute reads prefill's copy at 1.
        assert_eq!(render(&p.decode), "C0 C1@0<<6/8 c4@0<1 C2@1<<-/1 C3 C4@0<2 c1@0<5 C5 C6");
    }

    #[test]
    fn more_copied_layers_than_slots_rotate_through_every_slot() {
        // Blocks 0 embed, 1..=4 layers, 5 norm, 6 head; layers stream through 2
        // slots: slot 0 holds blocks 1, 3 and slot 1 blocks 2, 4, in prefill and decode.
        let p = build(7, &[1, 2, 3, 4], &[], &[], 2, 0, Strategy::Djinn);
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c3@0<3 C2@1<1 c4@1<5 C3@0<4 c1@0<7 C4@1<6 c2@1<9 C5 C6");
        assert_eq!(render(&p.decode), "C0 C1@0<<6/8 c3@0<1 C2@1<<8/10 c4@1<3 C3@0<2 c1@0<5 C4@1<4 c2@1<7 C5 C6");
    }

    #[test]
    fn a_pinned_slot_keeps_its_layer_and_the_rest_rotate_through_one_slot() {
        // As above with one pinned slot: prefill leaves block 4 in slot 1, and
        // decode keeps it there; blocks 1, 2, 3 rotate through slot 0.
        let p = build(7, &[1, 2, 3, 4], &[], &[], 2, 1, Strategy::Djinn);
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c3@0<3 C2@1<1 c4@1<5 C3@0<4 c1@0<7 C4@1<6 C5 C6");
        assert_eq!(render(&p.decode), "C0 C1@0<<6/8 c2@0<1 C2@0<2 c3@0<3 C3@0<4 c1@0<5 C4@1<<-/6 C5 C6");
        let copies = |list: &[Item]| list.iter().filter(|it| it.work.is_copy()).count();
        assert_eq!(copies(&p.decode), 3, "one copy fewer per token than layers copied");
    }

    #[test]
    fn sync_copies_wait_for_the_compute_before_their_block() {
        let p = build(7, &[1, 2, 4], &[], &[], 2, 0, Strategy::Sync);
        // c4@0 waits on C3 (position 5, serialize) and on C1 (position 2, slot reuse).
        assert_eq!(render(&p.prefill), "C0 c1@0<0 C1@0<1 c2@1<2 C2@1<3 C3 c4@0<5<2 C4@0<6 C5 C6");
        // Decode's first copies also carry the slot's last occupant of the previous pass.
        assert_eq!(render(&p.decode), "C0 c1@0<0<<7/7 C1@0<1 c2@1<2<<4/4 C2@1<3 C3 c4@0<5<2 C4@0<6 C5 C6");
    }

    #[test]
    fn host_layer_leaves_decode_copying_the_rest_through_the_same_slots() {
        // Host [2]: decode copies D = [1, 4], d0 = block 1 → slot 0, d1 = block 4 → slot 1.
        let p = build(7, &[1, 2, 4], &[], &[2], 2, 0, Strategy::Djinn);
        // No more copied layers than slots: each is pinned. Block 4 stays where
        // prefill leaves it (slot 0); block 1 goes to slot 1, after slot 1's last
        // prefill occupant (block 2, computed at 5): the one prologue copy, at 6.
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c4@0<3 C2@1<1 c1@1<5 C3 C4@0<4 C5 C6");
        // Decode copies nothing; every iteration reads prefill's copies (6 and 4).
        // Block 2 is a host compute with no dependency.
        assert_eq!(render(&p.decode), "C0 C1@1<<-/6 H2 C3 C4@0<<-/4 C5 C6");
    }

    #[test]
    fn host_layer_among_more_copied_layers_than_slots() {
        // Blocks 0 embed, 1..=5 layers, 6 norm, 7 head; all 5 layers stream
        // through 2 slots, block 3 is a host layer: D = [1, 2, 4, 5] → slots 0, 1, 0, 1.
        let p = build(8, &[1, 2, 3, 4, 5], &[], &[3], 2, 0, Strategy::Djinn);
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
    fn copied_layers_that_prefill_leaves_in_their_slots_need_no_prologue() {
        // Host [1]: D = [2, 4], exactly what prefill leaves in slots 1 and 0.
        let p = build(7, &[1, 2, 4], &[], &[1], 2, 0, Strategy::Djinn);
        assert_eq!(render(&p.prefill), "c1@0 c2@1 C0 C1@0<0 c4@0<3 C2@1<1 C3 C4@0<4 C5 C6");
        assert_eq!(render(&p.decode), "C0 H1 C2@1<<-/1 C3 C4@0<<-/4 C5 C6");
    }

    #[test]
    fn decode_occupants_pin_what_prefill_leaves_then_the_latest_and_rotate_the_rest() {
        // Slots' last prefill occupants: slot 0 → 9, slot 1 → 8 (host), slot 2 → 7.
        let last = [Some(9), Some(8), Some(7)];
        assert_eq!(decode_occupants(&[2, 7, 9], &last, 0), [vec![9], vec![2], vec![7]]);
        assert_eq!(decode_occupants(&[2, 3, 5, 7, 9], &last, 0), [vec![2, 7], vec![3, 9], vec![5]]);
        assert_eq!(decode_occupants(&[2, 3, 5, 7, 9], &last, 1), [vec![9], vec![2, 5], vec![3, 7]]);
        assert_eq!(decode_occupants(&[2, 3, 5, 7, 9], &last, 2), [vec![9], vec![2, 3, 5], vec![7]]);
        // At most all slots but one are pinned while more layers than slots rotate.
        assert_eq!(decode_occupants(&[2, 3, 5, 7, 9], &last, 5), decode_occupants(&[2, 3, 5, 7, 9], &last, 2));
        // Host slot 1's last occupant is not copied: the second pin is the latest copied layer left.
        assert_eq!(decode_occupants(&[2, 3, 5, 9], &[Some(9), Some(8), Some(6)], 2), [vec![9], vec![5], vec![2, 3]]);
    }

    #[test]
    fn all_streamed_layers_on_the_host_leave_decode_without_copies() {
        let p = build(7, &[1, 2, 4], &[], &[1, 2, 4], 2, 0, Strategy::Djinn);
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
                    let p = build(12, &streamed, &[], host, k, 0, strategy);
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
