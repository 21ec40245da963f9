//! Integration tests of the plan verifier, the way the executor meets it: a
//! plan file's text is parsed with `Plan::from_toml_str`, then verified. Each
//! test corrupts the text of a valid plan the way a hand edit would and checks
//! that the error names the rule, the step and the slot, and says how to fix it.
//!
//! The plan is written out by hand here (not by the compiler, whose output the
//! verifier must not trust): a two-layer Llama with both layers streamed
//! through two slots, the decode body software-pipelined.

use djinn_core::activations::{ActivationLayout, KvLayout, RunShape, WORKSPACE_BYTES};
use djinn_core::gpu::GpuProfile;
use djinn_core::model::{Architecture, Dtype, ModelSpec};
use djinn_core::plan::{
    Arena, BlockPlacement, Lane, Op, Phase, Placement, Plan, Prediction, Region, RegionKind, Step, Strategy,
    FORMAT_VERSION,
};
use djinn_core::verify::{verify, Rule};

/// `(op, block, slot, wait, wait_prev, record)` of one step.
type Row<'a> = (Op, &'a str, Option<u64>, &'a [&'a str], &'a [&'a str], &'a str);

fn steps(rows: &[Row]) -> Phase {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    let steps = rows
        .iter()
        .enumerate()
        .map(|(i, &(op, block, slot, wait, wait_prev, record))| Step {
            lane: if op == Op::Copy { Lane::Copy } else { Lane::Compute },
            op,
            block: block.into(),
            slot,
            wait: strings(wait),
            wait_prev: strings(wait_prev),
            record: (!record.is_empty()).then(|| record.to_string()),
            warm: false,
            start_us: 10.0 * i as f64,
            end_us: 10.0 * i as f64 + 8.0,
        })
        .collect();
    Phase { steps }
}

fn two_layer_plan() -> Plan {
    use Op::{Compute as C, Copy as K};
    let arch = Architecture {
        family: "llama".into(),
        hidden_size: 64,
        intermediate_size: 128,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        vocab_size: 100,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        ..Default::default()
    };
    let model = ModelSpec::from_arch("tiny-2l", arch, Dtype::Bf16);
    let shape = RunShape { prompt_len: 8, max_seq_len: 32, batch: 1 };
    let kv = KvLayout::new(&model.arch, model.dtype, &shape).bytes();
    let act = ActivationLayout::new(&model.arch, model.dtype, &shape).bytes;
    let layer = model.block("layer.0").unwrap().bytes;
    let mut regions = Vec::new();
    let mut offset = 0;
    let mut placements = Vec::new();
    for b in &model.blocks {
        let placement = if b.name.starts_with("layer.") {
            Placement::Streamed
        } else {
            regions.push(Region {
                name: format!("resident.{}", b.name),
                kind: RegionKind::Resident,
                offset,
                bytes: b.bytes,
            });
            offset += b.bytes.div_ceil(512) * 512;
            Placement::Resident { region: format!("resident.{}", b.name) }
        };
        placements.push(BlockPlacement { block: b.name.clone(), placement });
    }
    for (name, kind, bytes) in [
        ("slot.0", RegionKind::Slot, layer),
        ("slot.1", RegionKind::Slot, layer),
        ("kv_cache", RegionKind::KvCache, kv),
        ("activations", RegionKind::Activations, act),
        ("workspace", RegionKind::Workspace, WORKSPACE_BYTES),
    ] {
        regions.push(Region { name: name.into(), kind, offset, bytes });
        offset += bytes.div_ceil(512) * 512;
    }
    let prefill = steps(&[
        (K, "layer.0", Some(0), &[], &[], "ready:layer.0"),
        (K, "layer.1", Some(1), &[], &[], "ready:layer.1"),
        (C, "embed", None, &[], &[], ""),
        (C, "layer.0", Some(0), &["ready:layer.0"], &[], "done:layer.0"),
        (K, "layer.0", Some(0), &["done:layer.0"], &[], "ready:layer.0"), // prologue of decode iteration 0
        (C, "layer.1", Some(1), &["ready:layer.1"], &[], "done:layer.1"),
        (K, "layer.1", Some(1), &["done:layer.1"], &[], "ready:layer.1"), // prologue
        (C, "norm", None, &[], &[], ""),
        (C, "lm_head", None, &[], &[], ""),
    ]);
    let decode = steps(&[
        (C, "embed", None, &[], &[], ""),
        (C, "layer.0", Some(0), &[], &["ready:layer.0"], "done:layer.0"),
        (K, "layer.0", Some(0), &["done:layer.0"], &[], "ready:layer.0"), // for the next iteration
        (C, "layer.1", Some(1), &[], &["ready:layer.1"], "done:layer.1"),
        (K, "layer.1", Some(1), &["done:layer.1"], &[], "ready:layer.1"), // for the next iteration
        (C, "norm", None, &[], &[], ""),
        (C, "lm_head", None, &[], &[], ""),
    ]);
    let gpu = GpuProfile {
        name: "test".into(),
        source: "hand-written".into(),
        memory_bytes: 1 << 30,
        usable_bytes: 1 << 30,
        hbm_gbps: 300.0,
        fp16_tflops: 60.0,
        attn_tflops: None,
        pcie_gen: 4,
        pcie_lanes: 16,
        h2d_gbps: 25.0,
        copy_latency_us: 10.0,
        kernel_overhead_us: 5.0,
        h2d_curve: vec![],
        block_times: vec![],
        cpu: None,
    };
    let prediction = Prediction {
        ttft_ms: 0.1,
        decode_ms_per_token: 0.1,
        decode_copy_busy: 0.5,
        prefill_copy_busy: 0.5,
        resident_blocks: 3,
        streamed_blocks: 2,
        resident_bytes: model.total_bytes() - 2 * layer,
        streamed_bytes_per_token: 2 * layer,
        slots: 2,
        slot_bytes: layer,
        kv_cache_bytes: kv,
        activation_bytes: act,
        workspace_bytes: WORKSPACE_BYTES,
    };
    Plan {
        format_version: FORMAT_VERSION,
        generator: "tests/verifier.rs".into(),
        strategy: Strategy::Djinn,
        budget_bytes: offset,
        shape,
        prediction,
        arena: Arena { bytes: offset, alignment: 256, regions },
        placements,
        prefill,
        decode,
        gpu,
        model,
    }
}

/// Parses `text` and verifies it; the error's text (`Ok` if the plan verified).
fn check(text: &str) -> Result<(), String> {
    let plan = Plan::from_toml_str(text, "edited.toml").unwrap_or_else(|e| panic!("{e}"));
    verify(&plan).map_err(|e| e.to_string())
}

/// `text` with the `n`-th (from 0) occurrence of `from` replaced by `to`.
fn edit(text: &str, from: &str, n: usize, to: &str) -> String {
    let (at, _) = text.match_indices(from).nth(n).unwrap_or_else(|| panic!("no occurrence {n} of {from:?}"));
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}

#[test]
fn hand_written_plan_verifies_after_a_toml_round_trip() {
    let text = two_layer_plan().to_toml_string();
    check(&text).unwrap();
    assert_eq!(text.matches("wait_prev = [\"ready:layer.").count(), 2, "{text}");
}

#[test]
fn deleting_the_next_iterations_slot_wait_is_a_slot_reuse_error() {
    let text = two_layer_plan().to_toml_string();
    // Occurrences of `wait = ["done:layer.1"]`: prefill's prologue copy, then decode's step 4.
    let err = check(&edit(&text, "wait = [\"done:layer.1\"]\n", 1, "")).unwrap_err();
    assert!(err.starts_with("the plan is not safe to run: 1 violation of the plan rules\n"), "{err}");
    assert!(
        err.contains(
            "rule slot-reuse broken at decode step 4 (copy layer.1 into slot 1): in every decode iteration \
             (shown for the first, whose previous iteration is prefill), the copy may overwrite slot 1 while step 3 (compute layer.1 \
             from slot 1) still reads layer.1 from it; make it wait on that compute's completion: \
             add wait = [\"done:layer.1\"] to step 4"
        ),
        "{err}"
    );
}

#[test]
fn pointing_a_carried_compute_at_the_wrong_event_names_step_slot_and_fix() {
    let text = two_layer_plan().to_toml_string();
    // Decode's compute of layer.1 waits on the copy of layer.0 instead of its own. Slot 1
    // still holds layer.1 from prefill, but the prologue copy rewriting it is unordered.
    let err = check(&edit(&text, "wait_prev = [\"ready:layer.1\"]", 0, "wait_prev = [\"ready:layer.0\"]")).unwrap_err();
    let rules: Vec<&str> =
        err.lines().skip(1).filter_map(|l| l.trim().strip_prefix("rule ")?.split(' ').next()).collect();
    assert_eq!(rules, [Rule::Events.name(), Rule::SlotReuse.name(), Rule::SlotReuse.name()], "{err}");
    assert!(
        err.contains(
            "rule events broken at decode step 3 (compute layer.1 from slot 1): has wait_prev on event \
             \"ready:layer.0\", but step 2 records it earlier in the same iteration"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "rule slot-reuse broken at prefill step 6 (copy layer.1 into slot 1): the copy may overwrite slot 1 \
             while decode step 3 (compute layer.1 from slot 1) of the first iteration still reads layer.1 from it; \
             the compute does not wait for this copy of its block: add wait_prev = [\"ready:layer.1\"] to decode \
             step 3 (compute layer.1 from slot 1) of the first iteration"
        ),
        "{err}"
    );
}

#[test]
fn shrinking_the_kv_cache_region_is_an_arena_error() {
    let plan = two_layer_plan();
    let kv = plan.region("kv_cache").unwrap();
    let text = plan.to_toml_string();
    let from = format!("name = \"kv_cache\"\nkind = \"kv_cache\"\noffset = {}\nbytes = {}\n", kv.offset, kv.bytes);
    let to = format!("name = \"kv_cache\"\nkind = \"kv_cache\"\noffset = {}\nbytes = {}\n", kv.offset, kv.bytes / 2);
    let err = check(&edit(&text, &from, 0, &to)).unwrap_err();
    assert!(err.contains("rule arena broken at region kv_cache: is 4096 bytes"), "{err}");
    assert!(err.contains("needs 8192 bytes"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
}

/// The L4 golden of Llama-2-13B: the fine block table, with down blocks streamed.
fn fine_golden() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/l4-llama2-13b.toml");
    let text = std::fs::read_to_string(path).unwrap();
    check(&text).unwrap();
    assert!(text.contains("kind = \"gate_up\"") && text.contains("kind = \"down\""), "a fine-table golden");
    text
}

#[test]
fn host_computing_a_fine_down_after_a_device_gate_up_verifies() {
    let text = fine_golden();
    // Decode's compute of layer.0.down from its slot, edited into a host compute: its gate_up is
    // resident and runs on the device, and the runtime hands `gate` down with the residual stream.
    let from = "op = \"compute\"\nblock = \"layer.0.down\"\nslot = 0\nwait_prev = [\"ready:layer.0.down\"]\n";
    assert_eq!(text.matches(from).count(), 1, "decode's carried compute of layer.0.down");
    let edited = edit(&text, from, 0, "op = \"host_compute\"\nblock = \"layer.0.down\"\n");
    check(&edited).unwrap();
}

#[test]
fn a_fine_block_of_the_wrong_kind_is_a_model_identity_error() {
    let text = fine_golden();
    let err = check(&edit(&text, "kind = \"gate_up\"", 0, "kind = \"mlp\"")).unwrap_err();
    assert!(err.contains("rule model-identity broken"), "{err}");
    assert!(err.contains("layer.0.gate_up"), "{err}");
    // A down block renamed as an MLP half's name no longer matches the table.
    let err = check(&edit(&text, "name = \"layer.3.down\"", 0, "name = \"layer.3.mlp\"")).unwrap_err();
    assert!(err.contains("rule model-identity broken"), "{err}");
}

#[test]
fn a_hand_edited_warm_copy_out_of_the_leading_run_is_a_warm_error() {
    let text = fine_golden();
    assert_eq!(text.matches("warm = true").count(), 2, "the golden's two leading copies are warm");
    // The first copy no longer warm: the second is a warm copy issued after a step that is not.
    let err = check(&edit(&text, "warm = true\n", 0, "")).unwrap_err();
    assert!(err.starts_with("the plan is not safe to run: 1 violation of the plan rules\n"), "{err}");
    assert!(
        err.contains(
            "rule warm broken at prefill step 1 (copy layer.1.down into slot 1): is a warm copy after a step that \
             is not warm"
        ),
        "{err}"
    );
    // A copy that waits on a compute, marked warm: issued ahead of the pass, it would overwrite its slot
    // under that compute's reader.
    let waiting = "block = \"layer.4.down\"\nslot = 1\nwait = [\"done:layer.1.down\"]\n";
    assert_eq!(text.matches(waiting).count(), 2, "prefill's copy of layer.4.down, then decode's");
    let err = check(&edit(&text, waiting, 0, &format!("{waiting}warm = true\n"))).unwrap_err();
    assert!(err.contains("is a warm copy that waits on [\"done:layer.1.down\"]"), "{err}");
    assert!(err.contains("second warm copy into slot 1 (step 1 is the first)"), "{err}");
}
