//! The vector-clock happens-before of [`super::trace`] against the definition:
//! reachability over lane order and resolved events, computed naively (a
//! linear scan per wait, an ancestor set per node) on the fixtures and on
//! many random edits of them.

use super::fixture::{self, Style};
use super::index::Index;
use super::trace::{Pass, Trace};
use super::*;
use crate::plan::Lane;

/// `u` happens before `v`, for every pair, straight from the definition.
fn naive_happens_before(trace: &Trace) -> Vec<Vec<bool>> {
    let n = trace.nodes.len();
    let latest = |range: std::ops::Range<usize>, event: &str| {
        range.rev().find(|&u| trace.nodes[u].step.record.as_deref() == Some(event))
    };
    let pass_range = |pass: Pass| {
        let first = trace.nodes.iter().position(|x| x.pass == pass).unwrap_or(n);
        let len = trace.nodes.iter().filter(|x| x.pass == pass).count();
        first..first + len
    };
    let mut before = vec![vec![false; n]; n];
    for v in 0..n {
        let node = &trace.nodes[v];
        let mut preds: Vec<usize> =
            (0..v).rev().find(|&u| trace.nodes[u].step.lane == node.step.lane).into_iter().collect();
        let here = pass_range(node.pass).start..v;
        preds.extend(node.step.wait.iter().filter_map(|e| latest(here.clone(), e)));
        let prev = match node.pass {
            Pass::Prefill => None,
            Pass::Decode(0) => Some(Pass::Prefill),
            Pass::Decode(t) => Some(Pass::Decode(t - 1)),
        };
        if let Some(prev) = prev {
            preds.extend(node.step.wait_prev.iter().filter_map(|e| latest(pass_range(prev), e)));
        }
        for p in preds {
            let ancestors = before[p].clone();
            for (mine, theirs) in before[v].iter_mut().zip(ancestors) {
                *mine |= theirs;
            }
            before[v][p] = true;
        }
    }
    before
}

fn assert_same_relation(plan: &Plan, what: &str) {
    let index = Index::new(plan);
    let trace = Trace::unroll(plan, &index, &mut Vec::new());
    let naive = naive_happens_before(&trace);
    for (v, before_v) in naive.iter().enumerate() {
        for (u, &want) in before_v.iter().enumerate() {
            assert_eq!(trace.hb(u, v), want, "{what}: hb({u}, {v})");
        }
        if let Some(slot) = trace.nodes[v].step.slot {
            let want = (0..v).rev().find(|&w| {
                let s = trace.nodes[w].step;
                s.op == Op::Copy && s.slot == Some(slot) && before_v[w]
            });
            assert_eq!(trace.last_copy_before(slot, v), want, "{what}: last copy into slot {slot} before {v}");
        }
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

#[test]
fn vector_clocks_agree_with_reachability_on_fixtures_and_random_edits() {
    let bases = [
        fixture::streamed_plan(),
        fixture::plan(4, &[0, 1, 2, 3], 3, Style::Pipelined),
        fixture::plan(4, &[0, 1, 3], 2, Style::Sync),
        fixture::plan(3, &[1], 2, Style::Pipelined),
    ];
    let mut rng = Rng(0x5eed);
    for (b, base) in bases.iter().enumerate() {
        assert_same_relation(base, &format!("fixture {b}"));
        for case in 0..60 {
            let mut plan = base.clone();
            for _ in 0..1 + rng.below(4) {
                let decode = rng.below(2) == 1;
                let steps = if decode { &mut plan.decode.steps } else { &mut plan.prefill.steps };
                let (i, j) = (rng.below(steps.len()), rng.below(steps.len()));
                match rng.below(6) {
                    0 => steps[i].wait.clear(),
                    1 => steps[i].wait_prev.clear(),
                    2 => steps.swap(i, j),
                    3 => steps[i].record = steps[j].record.clone(),
                    4 => {
                        let e = steps[j].record.clone().unwrap_or_default();
                        if decode && rng.below(2) == 0 {
                            steps[i].wait_prev.push(e)
                        } else {
                            steps[i].wait.push(e)
                        }
                    }
                    _ => steps[i].lane = if steps[i].lane == Lane::Copy { Lane::Compute } else { Lane::Copy },
                }
            }
            assert_same_relation(&plan, &format!("fixture {b}, case {case}"));
        }
    }
}
