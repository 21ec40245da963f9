//! The checkpoint on disk, checked against a plan and packed into block images.
//!
//! A plan names its model by block table: which tensors, with which shapes,
//! dtypes and sizes, sit at which offsets of which block's packed image
//! (`djinn_core::model`). [`Weights::open`] reads the model directory's
//! headers (`djinn_core::hf`), memory-maps its safetensors files, and refuses
//! a checkpoint that does not match the plan, naming the first tensor (or
//! architecture field) that differs — running a plan on other weights would
//! read the wrong bytes silently. After that, [`Weights::write_block_image`]
//! cannot fail: it is the one seam through which every backend fills the
//! memory a block is copied from (the CPU backend's host images, the CUDA
//! backend's pinned buffers).
//!
//! Error messages carry their causes inline (no `source` chain), so a
//! binary's `{:#}` prints each cause once.
//!
//! The maps are read-only; like every reader of memory-mapped checkpoints we
//! assume nobody truncates the files while they are mapped (a truncated file
//! *before* the run is caught at open, against each file's mapped length).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use djinn_core::hf::{HfConfig, HfError, ModelDir};
use djinn_core::model::{Architecture, ModelSpec};
use djinn_core::Plan;
use indicatif::{ProgressBar, ProgressStyle};
use memmap2::Mmap;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WeightsError {
    #[error("cannot use the weights in {}: {error}", dir.display())]
    Dir { dir: PathBuf, error: HfError },
    #[error(
        "tensor `{tensor}` (block `{block}`) is in the plan but not in the checkpoint at {}; \
         the plan was compiled for another model",
        dir.display()
    )]
    MissingTensor { dir: PathBuf, tensor: String, block: String },
    #[error(
        "tensor `{tensor}` (block `{block}`) in {}: {what} is {found} in the checkpoint but {planned} in the plan; \
         the plan was compiled for another model",
        file.display()
    )]
    TensorMismatch { file: PathBuf, tensor: String, block: String, what: &'static str, planned: String, found: String },
    #[error(
        "architecture field `{field}` is {planned} in the plan but {found} in {}/config.json; \
         the plan was compiled for another model",
        dir.display()
    )]
    Architecture { dir: PathBuf, field: &'static str, planned: String, found: String },
    #[error("block `{block}` of the plan: tensor `{tensor}` at offset {offset} + {bytes} bytes overruns the block image of {image} bytes")]
    Layout { block: String, tensor: String, offset: u64, bytes: u64, image: u64 },
    #[error("cannot memory-map {}: {error}", file.display())]
    Map { file: PathBuf, error: std::io::Error },
    #[error(
        "{} is {len} bytes, but tensor `{tensor}` needs bytes up to {end}: the file was truncated after its header was read",
        file.display()
    )]
    Truncated { file: PathBuf, tensor: String, end: u64, len: u64 },
}

/// One tensor's bytes: where they are in a mapped file and where they go in the image.
#[derive(Debug, Clone, Copy)]
struct Piece {
    file: usize,
    src: usize,
    len: usize,
    dst: usize,
}

/// A model directory matched against a plan, its safetensors files mapped.
pub struct Weights {
    dir: ModelDir,
    spec: ModelSpec,
    files: Vec<(PathBuf, Mmap)>,
    /// Per block of `spec.blocks`: its tensors in image order.
    pieces: Vec<Vec<Piece>>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights").field("dir", &self.dir.dir).field("files", &self.files.len()).finish()
    }
}

impl Weights {
    /// Opens `dir` and checks it against `plan.model`: every planned tensor
    /// present with the planned name, shape, dtype and size, the same
    /// architecture, and every file long enough for its tensors.
    pub fn open(dir: &Path, plan: &Plan) -> Result<Weights, WeightsError> {
        let model = ModelDir::open(dir).map_err(|error| WeightsError::Dir { dir: dir.to_path_buf(), error })?;
        let spec = plan.model.clone();
        let mut files: Vec<(PathBuf, Mmap)> = Vec::new();
        let mut pieces = Vec::with_capacity(spec.blocks.len());
        for block in &spec.blocks {
            let mut list = Vec::with_capacity(block.tensors.len());
            for t in &block.tensors {
                let Some(src) = model.source(&t.name) else {
                    return Err(WeightsError::MissingTensor {
                        dir: dir.to_path_buf(),
                        tensor: t.name.clone(),
                        block: block.name.clone(),
                    });
                };
                let mismatch = |what, planned: String, found: String| WeightsError::TensorMismatch {
                    file: src.file.clone(),
                    tensor: t.name.clone(),
                    block: block.name.clone(),
                    what,
                    planned,
                    found,
                };
                if src.shape != t.shape {
                    return Err(mismatch("shape", format!("{:?}", t.shape), format!("{:?}", src.shape)));
                }
                if src.dtype != t.dtype {
                    return Err(mismatch("dtype", t.dtype.to_string(), src.dtype.to_string()));
                }
                if src.bytes != t.bytes {
                    return Err(mismatch("byte size", t.bytes.to_string(), src.bytes.to_string()));
                }
                if t.offset + t.bytes > block.bytes {
                    return Err(WeightsError::Layout {
                        block: block.name.clone(),
                        tensor: t.name.clone(),
                        offset: t.offset,
                        bytes: t.bytes,
                        image: block.bytes,
                    });
                }
                let file = match files.iter().position(|(p, _)| *p == src.file) {
                    Some(i) => i,
                    None => {
                        files.push((src.file.clone(), map(&src.file)?));
                        files.len() - 1
                    }
                };
                let len = files[file].1.len() as u64;
                if src.data_start + src.bytes > len {
                    return Err(WeightsError::Truncated {
                        file: src.file.clone(),
                        tensor: t.name.clone(),
                        end: src.data_start + src.bytes,
                        len,
                    });
                }
                list.push(Piece {
                    file,
                    src: src.data_start as usize,
                    len: src.bytes as usize,
                    dst: t.offset as usize,
                });
            }
            list.sort_by_key(|p| p.dst);
            pieces.push(list);
        }
        check_architecture(dir, &spec.arch, &model.config.arch)?;
        Ok(Weights { dir: model, spec, files, pieces })
    }

    /// Packs block `block` (index into `plan.model.blocks`) into `dst`: each
    /// tensor at its planned offset, the padding zeroed. Writes exactly the
    /// block's `bytes`; `dst` must be at least that long.
    pub fn write_block_image(&self, block: usize, dst: &mut [u8]) {
        let bytes = self.spec.blocks[block].bytes as usize;
        assert!(dst.len() >= bytes, "block {block}: image is {bytes} bytes, destination only {}", dst.len());
        let mut cursor = 0;
        for p in &self.pieces[block] {
            dst[cursor..p.dst].fill(0);
            dst[p.dst..p.dst + p.len].copy_from_slice(&self.files[p.file].1[p.src..p.src + p.len]);
            cursor = p.dst + p.len;
        }
        dst[cursor..bytes].fill(0);
    }

    /// Packs blocks `blocks` into fresh host buffers, with a progress bar on a terminal.
    pub fn pack_blocks(&self, blocks: &[usize]) -> Vec<Vec<u8>> {
        let total = blocks.iter().map(|&b| self.spec.blocks[b].bytes).sum();
        let bar = progress_bar(total, "packing weights");
        let images = blocks
            .iter()
            .map(|&b| {
                let mut image = vec![0u8; self.spec.blocks[b].bytes as usize];
                self.write_block_image(b, &mut image);
                bar.inc(image.len() as u64);
                image
            })
            .collect();
        bar.finish_and_clear();
        images
    }

    /// The plan's model (block table and architecture) these weights match.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// What `config.json` says (BOS and EOS ids included).
    pub fn config(&self) -> &HfConfig {
        &self.dir.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir.dir
    }
}

fn map(file: &Path) -> Result<Mmap, WeightsError> {
    let f = std::fs::File::open(file).map_err(|error| WeightsError::Map { file: file.to_path_buf(), error })?;
    // SAFETY: read-only map of a checkpoint; see the module doc on concurrent truncation.
    unsafe { Mmap::map(&f) }.map_err(|error| WeightsError::Map { file: file.to_path_buf(), error })
}

/// A byte-counting progress bar on stderr, hidden when stderr is not a terminal
/// or the work is too small to watch (under 256 MiB).
pub fn progress_bar(total_bytes: u64, message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || total_bytes < 256 << 20 {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{msg} {bar:40} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec})")
            .expect("the template is valid");
    ProgressBar::new(total_bytes).with_style(style).with_message(message)
}

fn check_architecture(dir: &Path, planned: &Architecture, found: &Architecture) -> Result<(), WeightsError> {
    let fields: [(&'static str, String, String); 12] = [
        ("family", planned.family.clone(), found.family.clone()),
        ("hidden_size", planned.hidden_size.to_string(), found.hidden_size.to_string()),
        ("intermediate_size", planned.intermediate_size.to_string(), found.intermediate_size.to_string()),
        ("num_layers", planned.num_layers.to_string(), found.num_layers.to_string()),
        ("num_heads", planned.num_heads.to_string(), found.num_heads.to_string()),
        ("num_kv_heads", planned.num_kv_heads.to_string(), found.num_kv_heads.to_string()),
        ("head_dim", planned.head_dim.to_string(), found.head_dim.to_string()),
        ("vocab_size", planned.vocab_size.to_string(), found.vocab_size.to_string()),
        ("rope_theta", planned.rope_theta.to_string(), found.rope_theta.to_string()),
        ("rms_norm_eps", planned.rms_norm_eps.to_string(), found.rms_norm_eps.to_string()),
        (
            "max_position_embeddings",
            planned.max_position_embeddings.to_string(),
            found.max_position_embeddings.to_string(),
        ),
        ("tie_word_embeddings", planned.tie_word_embeddings.to_string(), found.tie_word_embeddings.to_string()),
    ];
    if let Some((field, planned, found)) = fields.into_iter().find(|(_, p, f)| p != f) {
        return Err(WeightsError::Architecture { dir: dir.to_path_buf(), field, planned, found });
    }
    // A field added to `Architecture` later and not listed above is still compared.
    if planned != found {
        return Err(WeightsError::Architecture {
            dir: dir.to_path_buf(),
            field: "(all fields)",
            planned: format!("{planned:?}"),
            found: format!("{found:?}"),
        });
    }
    Ok(())
}
