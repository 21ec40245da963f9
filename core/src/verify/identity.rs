//! Rules `version` and `model-identity`: the plan is in this build's format,
//! and its block table is exactly the one the forward pass of its
//! architecture needs (with whole layers, with every layer split into
//! attention and MLP blocks, or into attention, gate/up and down blocks;
//! biases and q/k norms where the architecture has them).
//!
//! The runtime finds every weight through the plan's block table (which block,
//! which tensor, at which offset of the image, with which shape), so a table
//! that disagrees with the architecture would make kernels read the wrong
//! bytes. The table is re-derived here from the architecture with
//! [`expected_blocks`] and compared field by field; the image layout is checked
//! against the rules of [`crate::model`] (aligned, disjoint, inside the image).

use super::{Rule, Violation};
use crate::limits::MAX_DIM;
use crate::model::{
    expected_blocks, fine_expected, split_expected, Architecture, Block, Dtype, ExpectedBlock, Table, FAMILIES,
    TENSOR_ALIGN,
};
use crate::plan::{Plan, FORMAT_VERSION};
use crate::units::align_up;

pub(super) fn check_version(plan: &Plan, out: &mut Vec<Violation>) {
    if plan.format_version != FORMAT_VERSION {
        out.push(Violation::new(
            Rule::Version,
            format!(
                "format_version is {}, but this build reads format_version {FORMAT_VERSION}; \
                 recompile the plan with this djinn-compile",
                plan.format_version
            ),
        ));
    }
}

pub(super) fn check_model_identity(plan: &Plan, out: &mut Vec<Violation>) {
    let model = &plan.model;
    if !matches!(model.dtype, Dtype::F16 | Dtype::Bf16) {
        out.push(Violation::new(
            Rule::ModelIdentity,
            format!("model.dtype is {}, but plans hold f16 or bf16 weights only", model.dtype),
        ));
    }
    if !arch_is_sane(&model.arch, out) {
        return; // The expected table cannot be derived from a broken architecture.
    }
    let arch = &model.arch;
    let table = model.table();
    let required = table.blocks_per_layer() * arch.num_layers + 3;
    let layers = match table {
        Table::Layers => "layer.0 … layer.{last}",
        Table::Split => "layer.0.attn, layer.0.mlp … layer.{last}.mlp",
        Table::Fine => "layer.0.attn, layer.0.gate_up, layer.0.down … layer.{last}.down",
    };
    if model.blocks.len() as u64 != required {
        let names: Vec<&str> = model.blocks.iter().map(|b| b.name.as_str()).collect();
        let layers = layers.replace("{last}", &arch.num_layers.saturating_sub(1).to_string());
        out.push(Violation::new(
            Rule::ModelIdentity,
            format!(
                "model.blocks has {} blocks ({}), but an architecture of {} layers needs {required}: \
                 embed, {layers}, norm, lm_head",
                names.len(),
                abbreviate(&names),
                arch.num_layers,
            ),
        ));
        return;
    }
    let expected = match table {
        Table::Layers => expected_blocks(arch),
        Table::Split => split_expected(expected_blocks(arch)),
        Table::Fine => fine_expected(expected_blocks(arch)),
    };
    for (i, (block, want)) in model.blocks.iter().zip(expected).enumerate() {
        check_block(i, block, &want, model.dtype, out);
    }
}

/// Architecture sanity: nonzero, bounded sizes; heads divisible by kv heads; finite constants.
/// Returns whether the block table can be derived from it (all sizes nonzero and bounded).
fn arch_is_sane(arch: &Architecture, out: &mut Vec<Violation>) -> bool {
    let mut derivable = true;
    let mut bad = |field: &str, why: String| {
        out.push(Violation::new(Rule::ModelIdentity, format!("model.arch.{field} {why}")).subject("model.arch"));
    };
    if !FAMILIES.contains(&arch.family.as_str()) {
        bad("family", format!("is {:?}, but the families supported are {}", arch.family, FAMILIES.join(", ")));
    } else if let Some((field, problem)) = arch.family_contradiction() {
        bad(field, problem);
    }
    if let Some(problem) = arch.rope_scaling.invalid_parameter() {
        bad("rope_scaling", format!("({}): {problem}", arch.rope_scaling.rope_type()));
    }
    if arch.sliding_window.is_some_and(|w| w.window == 0) {
        bad("sliding_window.window", "is 0; a query attends at least to its own position".into());
    }
    let sizes = [
        ("hidden_size", arch.hidden_size),
        ("intermediate_size", arch.intermediate_size),
        ("num_layers", arch.num_layers),
        ("num_heads", arch.num_heads),
        ("num_kv_heads", arch.num_kv_heads),
        ("head_dim", arch.head_dim),
        ("vocab_size", arch.vocab_size),
        ("max_position_embeddings", arch.max_position_embeddings),
    ];
    for (field, v) in sizes {
        if v == 0 {
            bad(field, "is 0; every size of the architecture must be positive".into());
        } else if v > MAX_DIM {
            bad(field, format!("is {v}, implausibly large (the verifier accepts up to {MAX_DIM})"));
        }
        derivable &= v != 0 && v <= MAX_DIM;
    }
    if arch.num_kv_heads != 0 && !arch.num_heads.is_multiple_of(arch.num_kv_heads) {
        bad(
            "num_heads",
            format!(
                "is {}, not a multiple of num_kv_heads {}: grouped-query attention shares each KV head \
                 among a whole number of query heads",
                arch.num_heads, arch.num_kv_heads
            ),
        );
    }
    if !arch.head_dim.is_multiple_of(2) {
        bad(
            "head_dim",
            format!("is {}, but rotary embeddings rotate pairs of dimensions: it must be even", arch.head_dim),
        );
    }
    for (field, v) in [("rope_theta", arch.rope_theta), ("rms_norm_eps", arch.rms_norm_eps)] {
        if !(v.is_finite() && v > 0.0) {
            bad(field, format!("is {v}; it must be a positive finite number"));
        }
    }
    derivable
}

fn check_block(index: usize, block: &Block, want: &ExpectedBlock, dtype: Dtype, out: &mut Vec<Violation>) {
    let fail = |out: &mut Vec<Violation>, subject: String, message: String| {
        out.push(Violation::new(Rule::ModelIdentity, message).block(&block.name).subject(subject));
    };
    let at = format!("block {} (model.blocks[{index}])", block.name);
    if block.name != want.name || block.kind != want.kind || block.layer != want.layer {
        fail(
            out,
            at,
            format!(
                "is {:?} (kind {:?}, layer {:?}), but the architecture requires {:?} (kind {:?}, layer {:?}) \
                 at this position",
                block.name, block.kind, block.layer, want.name, want.kind, want.layer
            ),
        );
        return;
    }
    if block.tensors.len() != want.tensors.len() {
        let want_names: Vec<&str> = want.tensors.iter().map(|t| t.name.as_str()).collect();
        fail(
            out,
            at,
            format!(
                "has {} tensors, but the architecture requires {}: {}",
                block.tensors.len(),
                want.tensors.len(),
                abbreviate(&want_names)
            ),
        );
        return;
    }
    let mut spans = Vec::new(); // (offset, end, tensor name) of tensors whose bytes are right
    for (t, w) in block.tensors.iter().zip(&want.tensors) {
        let subject = format!("tensor {} of block {}", t.name, block.name);
        if t.name != w.name || t.role != w.role {
            fail(
                out,
                subject,
                format!("has role {:?}, but the architecture requires {} ({:?}) here", t.role, w.name, w.role),
            );
            continue;
        }
        if t.shape != w.shape {
            fail(out, subject, format!("has shape {:?}, but the architecture requires {:?}", t.shape, w.shape));
            continue;
        }
        if t.dtype != dtype {
            fail(
                out,
                subject.clone(),
                format!("is {}, but model.dtype is {dtype}; all weights share one dtype", t.dtype),
            );
        }
        // Shapes equal the expected ones, whose dims are bounded by MAX_DIM: no overflow.
        let want_bytes = w.shape.iter().product::<u64>() * t.dtype.size();
        if t.bytes != want_bytes {
            fail(
                out,
                subject.clone(),
                format!("has bytes = {}, but {:?} elements of {} take {want_bytes}", t.bytes, t.shape, t.dtype),
            );
            continue;
        }
        if t.offset % TENSOR_ALIGN != 0 {
            fail(
                out,
                subject.clone(),
                format!("has offset {}, not a multiple of the tensor alignment {TENSOR_ALIGN}", t.offset),
            );
        }
        match t.offset.checked_add(t.bytes) {
            Some(end) if end <= block.bytes => spans.push((t.offset, end, t.name.as_str())),
            _ => fail(
                out,
                subject,
                format!(
                    "spans bytes {}..{}, past the end of the block image ({} bytes)",
                    t.offset,
                    t.offset.saturating_add(t.bytes),
                    block.bytes
                ),
            ),
        }
    }
    spans.sort();
    for pair in spans.windows(2) {
        let ((a0, a1, a), (b0, b1, b)) = (pair[0], pair[1]);
        if b0 < a1 {
            fail(
                out,
                format!("tensor {b} of block {}", block.name),
                format!("bytes {b0}..{b1} overlap tensor {a} (bytes {a0}..{a1}) in the block image"),
            );
        }
    }
    let end = spans.iter().map(|s| s.1).max().unwrap_or(0);
    if spans.len() == block.tensors.len() && block.bytes != align_up(end, TENSOR_ALIGN) {
        fail(
            out,
            at,
            format!(
                "has bytes = {}, but its last tensor ends at {end}, so the image is {} bytes \
                 (the end rounded up to {TENSOR_ALIGN})",
                block.bytes,
                align_up(end, TENSOR_ALIGN)
            ),
        );
    }
}

/// `a, b, c, … (12 in all)` for long lists.
pub(super) fn abbreviate(names: &[&str]) -> String {
    if names.len() <= 6 {
        names.join(", ")
    } else {
        format!("{}, …, {} ({} in all)", names[..3].join(", "), names[names.len() - 1], names.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Architecture, Dtype, ModelSpec, RopeScaling, SlidingWindow, TensorRole};
    use crate::plan::Plan;
    use crate::verify::fixture::{broken_only, plan_of, streamed_plan, Style};
    use crate::verify::{verify, Rule};

    /// The fixture's plan (layers 0, 1, 3 of 4 streamed) for `arch`, its block table derived from it.
    fn plan_for(arch: Architecture, split: bool) -> Plan {
        let model = ModelSpec::from_arch("tiny", arch, Dtype::F16);
        let model = if split { model.split_layers() } else { model };
        // Blocks 1, 2 and 4 streamed: layers 0, 1, 3 whole, or layer.0's halves and layer.1.mlp.
        plan_of(model, &[1, 2, 4], 2, Style::Pipelined)
    }

    fn messages(plan: &Plan) -> Vec<String> {
        broken_only(plan, Rule::ModelIdentity).iter().map(|v| v.to_string()).collect()
    }

    fn qwen(family: &str) -> Architecture {
        let arch = streamed_plan().model.arch;
        Architecture { family: family.into(), qkv_bias: family == "qwen2", qk_norm: family == "qwen3", ..arch }
    }

    #[test]
    fn qwen_architectures_with_their_own_tables_verify_whole_or_split() {
        for family in ["qwen2", "qwen3"] {
            for split in [false, true] {
                let plan = plan_for(qwen(family), split);
                verify(&plan).unwrap_or_else(|e| panic!("{family}, split {split}: {e}"));
            }
        }
        let windowed = Architecture {
            rope_scaling: RopeScaling::Linear { factor: 2.0 },
            sliding_window: Some(SlidingWindow { window: 16, first_layer: 2 }),
            ..qwen("qwen2")
        };
        verify(&plan_for(windowed, true)).unwrap();
    }

    #[test]
    fn a_qwen2_architecture_needs_its_biases_in_the_block_table() {
        // The arch says qwen2 (q/k/v biases), the table is still Llama's: every layer lacks them.
        let mut plan = streamed_plan();
        plan.model.arch = qwen("qwen2");
        let v = messages(&plan);
        assert!(
            v[0].contains("block layer.0 (model.blocks[1])")
                && v[0].contains("has 9 tensors, but the architecture requires 12")
                && v[0].contains("model.layers.0.self_attn.q_proj.bias"),
            "{v:#?}"
        );
        // A bias of the wrong width is named with both shapes.
        let mut plan = plan_for(qwen("qwen2"), false);
        let t = plan.model.blocks[3].tensors.iter_mut().find(|t| t.role == TensorRole::KBias).unwrap();
        t.shape = vec![64];
        let v = messages(&plan);
        assert!(v[0].contains("tensor model.layers.2.self_attn.k_proj.bias of block layer.2: has shape [64], but the architecture requires [32]"), "{v:#?}");
    }

    #[test]
    fn unknown_families_and_contradictions_are_named() {
        let mut plan = streamed_plan();
        plan.model.arch.family = "gemma".into();
        let v = messages(&plan);
        assert!(
            v[0].contains(
                "model.arch.family is \"gemma\", but the families supported are llama, mistral, qwen2, qwen3"
            ),
            "{v:#?}"
        );
        let plan = plan_for(Architecture { qk_norm: false, ..qwen("qwen3") }, false);
        let v = messages(&plan);
        assert!(v[0].contains("model.arch.qk_norm is false, but a qwen3 model has qk_norm = true"), "{v:#?}");
    }

    #[test]
    fn bad_rope_scaling_and_window_are_named() {
        let mut plan = streamed_plan();
        plan.model.arch.rope_scaling = RopeScaling::Linear { factor: 0.0 };
        plan.model.arch.sliding_window = Some(SlidingWindow { window: 0, first_layer: 0 });
        let v = messages(&plan);
        assert!(
            v.iter().any(|m| m.contains("model.arch.rope_scaling (linear): factor is 0; it must be a positive")),
            "{v:#?}"
        );
        assert!(v.iter().any(|m| m.contains("model.arch.sliding_window.window is 0")), "{v:#?}");
    }
}
