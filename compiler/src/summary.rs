//! The short human summary `djinn-compile` prints on stderr.
//!
//! Everything in it comes from the plan, so it is as deterministic as the plan
//! (the golden tests pin it with insta).

use djinn_core::model::{BlockKind, Table};
use djinn_core::plan::{Op, Placement, Plan};
use djinn_core::units::fmt_bytes;

/// A block as the summary lists it: `7` for layer 7, `7.attn` / `7.mlp` for
/// its halves, `7.gate_up` / `7.down` for its MLP's parts, the name for the others.
fn label(b: &djinn_core::model::Block) -> String {
    match (b.layer, b.kind) {
        (Some(l), BlockKind::Attention) => format!("{l}.attn"),
        (Some(l), BlockKind::Mlp) => format!("{l}.mlp"),
        (Some(l), BlockKind::GateUp) => format!("{l}.gate_up"),
        (Some(l), BlockKind::Down) => format!("{l}.down"),
        (Some(l), _) => l.to_string(),
        (None, _) => b.name.clone(),
    }
}

/// The predictions of a plan the compiler did not choose, and the flags that
/// would have given it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    pub flags: String,
    pub decode_us: f64,
    pub ttft_us: f64,
}

/// Renders the summary; `notes` are extra informational lines (e.g. a capped
/// `--max-seq-len`), `alternatives` what the plans not chosen would predict.
pub fn render(plan: &Plan, notes: &[String], alternatives: &[Alternative]) -> String {
    let m = &plan.model;
    let p = &plan.prediction;
    let layers = m.arch.num_layers;
    // What a streamed unit is: a whole layer, or a layer's attention or MLP half.
    let table = m.table();
    let (unit, units) = if m.is_split() { ("blocks", table.blocks_per_layer() * layers) } else { ("layers", layers) };
    // Blocks the host holds and computes in every pass: host-computed in prefill too.
    let held: Vec<&str> =
        plan.prefill.steps.iter().filter(|s| s.op == Op::HostCompute).map(|s| s.block.as_str()).collect();
    let streamed_count = p.streamed_blocks - held.len() as u64;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "{}: {} ({}, {} layers, {}) on {}, strategy {}",
        plan.generator,
        m.name,
        m.dtype,
        layers,
        fmt_bytes(m.total_bytes()),
        plan.gpu.name,
        plan.strategy.name()
    ));
    line(format!(
        "budget {} (GPU memory {}); arena {} in {} regions",
        fmt_bytes(plan.budget_bytes),
        fmt_bytes(plan.gpu.memory_bytes),
        fmt_bytes(plan.arena.bytes),
        plan.arena.regions.len()
    ));
    line(format!(
        "block table: {}",
        match table {
            Table::Layers => "whole layers (--units layers)",
            Table::Split => "attention and MLP per layer (--units split)",
            Table::Fine => "attention, gate/up and down per layer (--units fine)",
        }
    ));
    for n in notes {
        line(format!("note: {n}"));
    }
    let others = p.kv_cache_bytes + p.activation_bytes + p.workspace_bytes;
    if m.total_bytes() > plan.budget_bytes {
        line(format!(
            "note: the model's weights ({}) exceed the budget ({}); {} of {units} {unit} stream from pinned host memory",
            fmt_bytes(m.total_bytes()),
            fmt_bytes(plan.budget_bytes),
            streamed_count,
        ));
    } else if m.total_bytes() + others > plan.budget_bytes {
        line(format!(
            "note: the weights ({}) fit the budget ({}) but not with the KV cache, activations and workspace ({}); \
             {} of {units} {unit} stream from pinned host memory",
            fmt_bytes(m.total_bytes()),
            fmt_bytes(plan.budget_bytes),
            fmt_bytes(others),
            streamed_count,
        ));
    }
    let resident = |kind| {
        let of = |(pl, b): &(&djinn_core::plan::BlockPlacement, &djinn_core::model::Block)| {
            b.kind == kind && matches!(pl.placement, Placement::Resident { .. })
        };
        plan.placements.iter().zip(&m.blocks).filter(of).count()
    };
    let layer_parts = if table == Table::Fine {
        format!(
            "the attention of {}, the gate/up of {} and the down of {} of {layers} layers",
            resident(BlockKind::Attention),
            resident(BlockKind::GateUp),
            resident(BlockKind::Down)
        )
    } else if m.is_split() {
        format!(
            "the attention of {} and the MLP of {} of {layers} layers",
            resident(BlockKind::Attention),
            resident(BlockKind::Mlp)
        )
    } else {
        format!("{} of {layers} layers", resident(BlockKind::Layer))
    };
    let fixed = ["embed", "norm", "lm_head"].into_iter().filter(|b| !held.contains(b)).collect::<Vec<_>>().join(", ");
    line(format!(
        "resident: {} blocks, {} ({fixed} and {layer_parts})",
        p.resident_blocks,
        fmt_bytes(p.resident_bytes),
    ));
    for b in &held {
        line(format!("held in host memory: {b} (computed by the host CPU in every pass)"));
    }

    if streamed_count > 0 {
        let streamed: Vec<String> = plan
            .placements
            .iter()
            .zip(&m.blocks)
            .filter(|(pl, b)| pl.placement == Placement::Streamed && !held.contains(&b.name.as_str()))
            .map(|(_, b)| label(b))
            .collect();
        line(format!(
            "streamed: {streamed_count} {unit} through {} slots of {}, {} copied per token",
            p.slots,
            fmt_bytes(p.slot_bytes),
            fmt_bytes(p.streamed_bytes_per_token)
        ));
        line(format!("streamed {unit}: {}", streamed.join(", ")));
        if let Some(slots) = decode_slots(plan) {
            line(format!("decode slots: {slots}"));
        }
        let warm = plan.warm_steps();
        if !warm.is_empty() {
            let blocks: Vec<String> =
                warm.iter().map(|s| m.block(&s.block).map_or_else(|| s.block.clone(), label)).collect();
            line(format!(
                "warm slots: {} ({}) copied at load and after each request, off the TTFT path",
                blocks.join(", "),
                fmt_bytes(plan.warm_bytes())
            ));
        }
        let host: Vec<String> = plan
            .decode
            .steps
            .iter()
            .filter(|s| s.op == Op::HostCompute && !held.contains(&s.block.as_str()))
            .map(|s| m.block(&s.block).map_or_else(|| s.block.clone(), label))
            .collect();
        if !host.is_empty() {
            // The measured block when the profile has one for this model, else the GEMV rate.
            let rate = plan.gpu.cpu.as_ref().map_or(String::new(), |c| {
                // As the cost model picks it.
                match c.block_time(&m.name, BlockKind::Mlp, plan.shape.prompt_len) {
                    Some(t) => format!(", {:.2} ms an MLP beside the copy lane (measured)", t.us / 1e3),
                    None => format!(", {:.1} GB/s", c.gemv_f16_gbps_during_copy),
                }
            });
            line(format!(
                "host CPU: {} of {} streamed {unit} computed on the host in decode ({}){rate}",
                host.len(),
                streamed_count,
                host.join(", ")
            ));
        }
    } else {
        line("streamed: nothing (every block is resident)".to_string());
    }
    line(format!(
        "kv cache {} (prompt {}, max seq {}, batch {}), activations {}, workspace {}",
        fmt_bytes(p.kv_cache_bytes),
        plan.shape.prompt_len,
        plan.shape.max_seq_len,
        plan.shape.batch,
        fmt_bytes(p.activation_bytes),
        fmt_bytes(p.workspace_bytes)
    ));
    line(format!(
        "predicted: TTFT {:.1} ms, decode {:.2} ms/token; copy lane busy {:.1}% of decode, {:.1}% of prefill",
        p.ttft_ms,
        p.decode_ms_per_token,
        p.decode_copy_busy * 100.0,
        p.prefill_copy_busy * 100.0
    ));
    let change = |alt: f64, chosen: f64| match (alt / chosen - 1.0) * 100.0 {
        d if !d.is_finite() => "-".to_string(),
        d if d.abs() < 0.5 => "±0%".to_string(),
        d => format!("{d:+.0}%"),
    };
    for a in alternatives {
        line(format!(
            "instead, with {}: decode {:.2} ms/token ({}), TTFT {:.1} ms ({})",
            a.flags,
            a.decode_us / 1e3,
            change(a.decode_us / 1e3, p.decode_ms_per_token),
            a.ttft_us / 1e3,
            change(a.ttft_us / 1e3, p.ttft_ms)
        ));
    }
    out
}

/// What each slot does in decode: rotates its copied blocks, or keeps one
/// (pinned: the body never copies into it). `None` when decode uses no slot.
fn decode_slots(plan: &Plan) -> Option<String> {
    let m = &plan.model;
    let layer = |name: &str| m.block(name).map_or_else(|| name.to_string(), label);
    let (one, many) = if m.is_split() { ("block", "blocks") } else { ("layer", "layers") };
    let mut parts = Vec::new();
    for slot in 0..plan.prediction.slots {
        let held: Vec<String> = plan
            .decode
            .steps
            .iter()
            .filter(|s| s.op == Op::Compute && s.slot == Some(slot))
            .map(|s| layer(&s.block))
            .collect();
        let copies = plan.decode.steps.iter().any(|s| s.op == Op::Copy && s.slot == Some(slot));
        match (held.as_slice(), copies) {
            ([], _) => parts.push(format!("slot {slot} unused")),
            ([held], false) => parts.push(format!("slot {slot} keeps {one} {held} (pinned)")),
            (held, _) => parts.push(format!("slot {slot} rotates {many} {}", held.join(", "))),
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
