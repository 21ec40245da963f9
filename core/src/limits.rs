//! Limits on what djinn reads from files: sizes and counts far above any real
//! plan, profile or model, so that a hostile or corrupt input is refused by
//! name before it costs memory or time.
//!
//! Why limits at all: parsing TOML costs about 90× the file size (a 20 MB plan
//! took 1.8 GB; a 200 MB one aborted the process on allocation), and the
//! verifier's work grows with the steps it unrolls. Each limit is checked
//! where the input enters ([`crate::plan::Plan::from_toml_str`],
//! [`crate::gpu::GpuProfile::from_toml_str`], [`crate::hf::ModelDir::open`]),
//! and each error names the file, the field and the limit.
//!
//! The figures, against the largest real inputs (`docs/plan-format.md`,
//! section Limits, says the same): the golden plan of Llama 2 70B
//! (`plans/h100-sxm-llama2-70b.toml`, 80 layers) is 166 kB with 83 blocks,
//! 54 regions and 119 steps per phase; the largest open models have about
//! 130 layers.

/// Largest plan file: about 50× the 70B golden; a plan at [`MAX_BLOCKS`] is about 4 MB.
pub const MAX_PLAN_FILE_BYTES: u64 = 8 << 20;

/// Most steps in one phase (`prefill.steps`, `decode.steps`): a real phase
/// has one compute per block and at most two copies per streamed block
/// (about 3 × blocks; 119 for the 70B golden).
pub const MAX_PHASE_STEPS: usize = 16_384;

/// Most blocks in `model.blocks` (and entries in `placements`): 2045 layers,
/// about 16× the largest open models.
pub const MAX_BLOCKS: usize = 2_048;

/// Most tensors in one block (a Llama layer has 9).
pub const MAX_BLOCK_TENSORS: usize = 64;

/// Most regions in `arena.regions`: one per resident block, the slots and three more.
pub const MAX_REGIONS: usize = 4_096;

/// Most event names in one step's `wait` and `wait_prev` together (the compiler
/// emits at most one per lane).
pub const MAX_STEP_WAITS: usize = 64;

/// Largest architecture dimension (`hidden_size`, `vocab_size`,
/// `max_position_embeddings`, …) accepted from `config.json` or a plan. Real
/// models are far below it (the largest vocabularies are about 256k, the
/// longest contexts about 10M tokens); the bound keeps each dimension's
/// products checkable ([`crate::activations::checked_region_bytes`]).
pub const MAX_DIM: u64 = 1 << 24;

/// Most layers accepted from `config.json`: a plan holds the layers plus
/// embed, norm and LM head, at most [`MAX_BLOCKS`].
pub const MAX_LAYERS: u64 = MAX_BLOCKS as u64 - 3;

/// Largest GPU profile file (the measured H200 profile is 3.4 kB).
pub const MAX_PROFILE_FILE_BYTES: u64 = 1 << 20;

/// Most points in a profile's `h2d_curve`, and most entries in its `block_times`.
pub const MAX_PROFILE_POINTS: usize = 4_096;

/// Largest `config.json` (a real one is about 1 kB).
pub const MAX_CONFIG_JSON_BYTES: u64 = 1 << 20;

/// Largest `model.safetensors.index.json` (Llama 2 70B's is about 70 kB).
pub const MAX_INDEX_JSON_BYTES: u64 = 16 << 20;

/// One count over its limit: where, what, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// The field, as a path into the file (`decode.steps`, `model.blocks[3].tensors`).
    pub field: String,
    pub found: usize,
    pub limit: usize,
    /// What is counted, plural (`steps`, `blocks`).
    pub what: &'static str,
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` has {} {}, over the limit of {}", self.field, self.found, self.what, self.limit)
    }
}

/// The array at `path` in `table`, if it is one.
fn array<'t>(table: &'t toml::Table, path: &[&str]) -> Option<&'t Vec<toml::Value>> {
    let (last, tables) = path.split_last()?;
    let mut t = table;
    for key in tables {
        t = t.get(*key)?.as_table()?;
    }
    t.get(*last)?.as_array()
}

fn at_most(field: String, found: usize, limit: usize, what: &'static str) -> Result<(), OverLimit> {
    if found > limit {
        Err(OverLimit { field, found, limit, what })
    } else {
        Ok(())
    }
}

/// Checks the counts of a plan's parsed TOML against the limits above, before
/// the plan is deserialized (fields of the wrong type are left to the schema).
pub fn check_plan_table(table: &toml::Table) -> Result<(), OverLimit> {
    let counted: [(&[&str], usize, &str); 5] = [
        (&["prefill", "steps"], MAX_PHASE_STEPS, "steps"),
        (&["decode", "steps"], MAX_PHASE_STEPS, "steps"),
        (&["model", "blocks"], MAX_BLOCKS, "blocks"),
        (&["placements"], MAX_BLOCKS, "placements"),
        (&["arena", "regions"], MAX_REGIONS, "regions"),
    ];
    for (path, limit, what) in counted {
        at_most(path.join("."), array(table, path).map_or(0, Vec::len), limit, what)?;
    }
    for phase in ["prefill", "decode"] {
        for (i, step) in array(table, &[phase, "steps"]).into_iter().flatten().enumerate() {
            let Some(step) = step.as_table() else { continue };
            let waits: usize = ["wait", "wait_prev"].iter().filter_map(|k| Some(step.get(*k)?.as_array()?.len())).sum();
            at_most(format!("{phase}.steps[{i}].wait + wait_prev"), waits, MAX_STEP_WAITS, "events")?;
        }
    }
    for (i, block) in array(table, &["model", "blocks"]).into_iter().flatten().enumerate() {
        let Some(block) = block.as_table() else { continue };
        let tensors = array(block, &["tensors"]).map_or(0, Vec::len);
        at_most(format!("model.blocks[{i}].tensors"), tensors, MAX_BLOCK_TENSORS, "tensors")?;
    }
    match table.get("gpu").and_then(toml::Value::as_table) {
        Some(gpu) => check_profile_table(gpu).map_err(|e| OverLimit { field: format!("gpu.{}", e.field), ..e }),
        None => Ok(()),
    }
}

/// Checks the counts of a GPU profile's parsed TOML.
pub fn check_profile_table(table: &toml::Table) -> Result<(), OverLimit> {
    for (key, what) in [("h2d_curve", "points"), ("block_times", "entries")] {
        at_most(key.into(), array(table, &[key]).map_or(0, Vec::len), MAX_PROFILE_POINTS, what)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
