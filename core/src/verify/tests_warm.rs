//! Tests of rule `warm`: [`fixture::streamed_plan`] with its two leading
//! copies marked warm is safe; each corruption breaks the rule (and, where the
//! corruption is also a race or a dangling wait, those rules too) with a
//! message naming the step.

use super::fixture::{assert_mentions, broken_only, find, streamed_plan};
use super::*;
use crate::plan::Op;

/// The fixture with prefill's leading copies (layer.0 into slot 0, layer.1 into slot 1) warm.
fn warm_plan() -> Plan {
    let mut plan = streamed_plan();
    for s in plan.prefill.steps.iter_mut().take_while(|s| s.op == Op::Copy && s.wait.is_empty()) {
        s.warm = true;
    }
    assert_eq!(plan.prefill.steps.iter().filter(|s| s.warm).count(), 2);
    plan
}

#[test]
fn leading_copies_marked_warm_are_safe_and_round_trip() {
    let plan = warm_plan();
    verify(&plan).unwrap();
    let text = plan.to_toml_string();
    assert_eq!(text.matches("warm = true").count(), 2, "{text}");
    assert_eq!(Plan::from_toml_str(&text, "warm.toml").unwrap(), plan);
    // A plan without warm copies writes no `warm` field at all.
    assert!(!streamed_plan().to_toml_string().contains("warm"));
}

#[test]
fn a_warm_decode_copy_breaks_warm() {
    let mut plan = warm_plan();
    let at = find(&plan.decode, Op::Copy, "layer.3");
    plan.decode.steps[at].warm = true;
    let v = broken_only(&plan, Rule::Warm);
    assert_mentions(&v[0], &["at decode step 2 (copy layer.3 into slot 0)", "only prefill's leading copies"]);
}

#[test]
fn a_warm_compute_breaks_warm() {
    let mut plan = warm_plan();
    plan.prefill.steps[2].warm = true; // compute embed, right after the warm copies
    let v = broken_only(&plan, Rule::Warm);
    assert_mentions(&v[0], &["at prefill step 2 (compute embed)", "only copies can be warm"]);
}

#[test]
fn a_warm_copy_after_the_pass_has_begun_breaks_warm() {
    let mut plan = warm_plan();
    let at = find(&plan.prefill, Op::Copy, "layer.3"); // waits on done:layer.0
    plan.prefill.steps[at].warm = true;
    let v = broken_only(&plan, Rule::Warm);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_mentions(&v[0], &["copy layer.3 into slot 0", "after a step that is not warm"]);
    assert_mentions(&v[1], &["waits on [\"done:layer.0\"]", "can wait on nothing"]);
    assert_mentions(&v[2], &["second warm copy into slot 0 (step 0 is the first)"]);
}

#[test]
fn a_warm_copy_that_waits_breaks_warm() {
    let mut plan = warm_plan();
    // The second warm copy waits on the first's record: a wait the idle device cannot need.
    plan.prefill.steps[1].wait = vec!["ready:layer.0".into()];
    let v = broken_only(&plan, Rule::Warm);
    assert_mentions(&v[0], &["at prefill step 1 (copy layer.1 into slot 1)", "can wait on nothing"]);
}

#[test]
fn two_warm_copies_into_one_slot_break_warm_and_the_race_rules() {
    let mut plan = warm_plan();
    plan.prefill.steps[1].slot = Some(0);
    let err = verify(&plan).unwrap_err();
    assert!(err.broke(Rule::Warm) && err.broke(Rule::CopyBeforeCompute), "{err}");
    let v = err.violations.iter().find(|v| v.rule == Rule::Warm).unwrap();
    assert_mentions(v, &["second warm copy into slot 0 (step 0 is the first)"]);
}
