//! Each limit refuses an input just over it, naming the file, the field and the limit.

use super::*;
use crate::fsio::ReadError;
use crate::plan::{tests::tiny_plan, Plan, PlanIoError, Step};
use crate::verify::fixture::streamed_plan;

fn refused(text: &str) -> PlanIoError {
    match Plan::from_toml_str(text, "hostile.toml") {
        Ok(_) => panic!("the plan must be refused"),
        Err(e) => e,
    }
}

/// A resident compute of `embed` with no slot or events: the smallest step.
fn tiny_step() -> Step {
    tiny_plan().decode.steps[0].clone()
}

#[test]
fn a_plan_file_over_the_size_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    let mut text = streamed_plan().to_toml_string();
    text.push_str(&"# padding\n".repeat(MAX_PLAN_FILE_BYTES as usize / 10));
    std::fs::write(&path, &text).unwrap();
    let e = Plan::load(&path).unwrap_err();
    let too_large = |e: &PlanIoError| matches!(e, PlanIoError::Read { error: ReadError::TooLarge { size: Some(s), .. }, .. } if *s == text.len() as u64);
    assert!(too_large(&e), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("cannot read plan ") && msg.contains("huge.toml: it is "), "{msg}");
    assert!(
        msg.contains("bytes, over the limit of 8388608 bytes (8.00 MiB; docs/plan-format.md, section Limits)"),
        "{msg}"
    );
    // The same text from memory (stdin) is refused the same way.
    assert!(too_large(&refused(&text)));
}

#[test]
fn a_phase_over_the_step_limit_is_refused_naming_the_phase() {
    let mut plan = streamed_plan();
    plan.decode.steps = vec![tiny_step(); MAX_PHASE_STEPS + 1];
    let text = plan.to_toml_string();
    assert!((text.len() as u64) < MAX_PLAN_FILE_BYTES, "the size limit would hide the step limit");
    let msg = refused(&text).to_string();
    assert_eq!(
        msg,
        "plan hostile.toml: `decode.steps` has 16385 steps, over the limit of 16384 (docs/plan-format.md, section \
         Limits)"
    );
    plan.decode.steps.pop();
    assert!(Plan::from_toml_str(&plan.to_toml_string(), "at-limit.toml").is_ok(), "at the limit is not over it");
}

#[test]
fn a_step_waiting_on_too_many_events_is_refused_naming_the_step() {
    let mut plan = streamed_plan();
    plan.prefill.steps[3].wait = (0..MAX_STEP_WAITS).map(|i| format!("e{i}")).collect();
    plan.prefill.steps[3].wait_prev = vec!["one more".into()];
    let msg = refused(&plan.to_toml_string()).to_string();
    assert!(msg.contains("`prefill.steps[3].wait + wait_prev` has 65 events, over the limit of 64"), "{msg}");
}

#[test]
fn a_model_over_the_block_limit_is_refused() {
    let mut plan = tiny_plan();
    plan.model.arch.num_layers = MAX_BLOCKS as u64; // + embed, norm, lm_head
    plan.model = crate::model::ModelSpec::from_arch("wide", plan.model.arch.clone(), plan.model.dtype);
    let msg = refused(&plan.to_toml_string()).to_string();
    assert!(msg.contains("`model.blocks` has 2051 blocks, over the limit of 2048"), "{msg}");
}

#[test]
fn a_block_over_the_tensor_limit_is_refused_naming_the_block() {
    let mut plan = tiny_plan();
    let t = plan.model.blocks[1].tensors[0].clone();
    plan.model.blocks[1].tensors = vec![t; MAX_BLOCK_TENSORS + 1];
    let msg = refused(&plan.to_toml_string()).to_string();
    assert!(msg.contains("`model.blocks[1].tensors` has 65 tensors, over the limit of 64"), "{msg}");
}

#[test]
fn an_arena_over_the_region_limit_is_refused() {
    let mut plan = tiny_plan();
    let r = plan.arena.regions[0].clone();
    plan.arena.regions = vec![r; MAX_REGIONS + 1];
    let msg = refused(&plan.to_toml_string()).to_string();
    assert!(msg.contains("`arena.regions` has 4097 regions, over the limit of 4096"), "{msg}");
}

#[test]
fn the_goldens_are_far_below_every_limit() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let plan = Plan::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let size = std::fs::metadata(&path).unwrap().len();
        // The margins are for the fine table of Llama-2-70B (80 layers, 3 blocks each: the largest
        // golden), which a model of ~130 layers would take to about 1.6 times these sizes.
        assert!(size * 16 < MAX_PLAN_FILE_BYTES, "{}: {size} bytes", path.display());
        assert!(plan.prefill.steps.len().max(plan.decode.steps.len()) * 32 < MAX_PHASE_STEPS, "{}", path.display());
        assert!(plan.model.blocks.len() * 8 < MAX_BLOCKS, "{}", path.display());
        assert!(plan.arena.regions.len() * 16 < MAX_REGIONS, "{}", path.display());
    }
}
