//! The verifier's cost stays near-linear in the steps. The race check used to
//! keep a bitset per step instance (quadratic time and memory: 40k steps took
//! 16 s and 1.8 GB), and the structural rules searched lists per step.

use std::time::{Duration, Instant};

use super::fixture::{self, Style};
use super::*;

/// A valid pipelined plan with `layers` layers, every one streamed through 8
/// slots, whose phases are padded to `steps` steps each with copies of the
/// phase's last copy (each a redundant reload of the same block into the same
/// slot, ordered like the original: still a safe plan).
fn plan_with_steps(layers: u64, steps: usize) -> Plan {
    let streamed: Vec<u64> = (0..layers).collect();
    let mut plan = fixture::plan(layers, &streamed, 8, Style::Pipelined);
    for phase in [&mut plan.prefill, &mut plan.decode] {
        let last = phase.steps.iter().rposition(|s| s.op == Op::Copy).unwrap();
        let n = steps.saturating_sub(phase.steps.len());
        let copy = phase.steps[last].clone();
        phase.steps.splice(last + 1..last + 1, std::iter::repeat_n(copy, n));
    }
    plan
}

/// How long verifying `plan` takes, and its result.
fn timed(plan: &Plan) -> (Result<(), VerifyError>, Duration) {
    let start = Instant::now();
    let out = verify(plan);
    (out, start.elapsed())
}

#[test]
fn hundred_thousand_step_plan_verifies_in_under_a_second() {
    let plan = plan_with_steps(4096, 100_000);
    assert_eq!(plan.decode.steps.len(), 100_000);
    let (result, took) = timed(&plan);
    result.unwrap();
    assert!(took < Duration::from_secs(1), "verifying 2 × 100k steps took {took:?}");
}

#[test]
fn hundred_thousand_step_plan_with_a_race_at_every_read_is_reported_in_under_a_second() {
    // No step waits on anything: every compute may read a half-written slot and
    // every copy may overwrite one still being read. Each is reported, with its
    // fix, in the same near-linear time.
    let mut plan = plan_with_steps(4096, 100_000);
    for s in plan.prefill.steps.iter_mut().chain(plan.decode.steps.iter_mut()) {
        s.wait.clear();
        s.wait_prev.clear();
    }
    let (result, took) = timed(&plan);
    let err = result.unwrap_err();
    assert!(err.violations.len() >= 8192, "{} violations", err.violations.len());
    assert!(err.rules().is_subset(&[Rule::CopyBeforeCompute, Rule::SlotReuse].into()), "{:?}", err.rules());
    assert!(took < Duration::from_secs(1), "verifying 2 × 100k steps took {took:?}");
}

#[test]
fn verification_time_grows_linearly_with_the_steps() {
    // Ten times the steps, about ten times the time (quadratic would be a hundred):
    // a bound that holds on a slow or busy machine. Best of three, to shed noise.
    let best = |plan: &Plan| (0..3).map(|_| timed(plan).1).min().unwrap();
    let (small, large) = (plan_with_steps(512, 10_000), plan_with_steps(512, 100_000));
    let (t_small, t_large) = (best(&small), best(&large));
    assert!(t_large < t_small * 25, "10k steps: {t_small:?}, 100k steps: {t_large:?}");
}

#[test]
fn hundred_thousand_step_plan_file_is_refused_by_the_limits_before_it_is_parsed() {
    let text = plan_with_steps(512, 100_000).to_toml_string();
    match Plan::from_toml_str(&text, "100k.toml") {
        Err(crate::plan::PlanIoError::Read { path, error: crate::fsio::ReadError::TooLarge { .. } }) => {
            assert_eq!(path, "100k.toml")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a 100k-step plan file was parsed"),
    }
}
