//! A model directory → config, block table, and where every tensor's bytes are.
//!
//! A directory holds `config.json` plus either one `model.safetensors` or a
//! `model.safetensors.index.json` whose `weight_map` names each tensor's shard.
//! Only headers are read, so opening a 140 GB checkpoint costs a few reads.
//! Every tensor the forward pass needs ([`expected_blocks`]) must be present
//! with the shape the config implies and the config's dtype: a checkpoint that
//! disagrees with its own config is refused here, by tensor and file, instead
//! of producing a plan whose block images have the wrong size.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::{parse_config, read_safetensors_header, HfConfig, HfError, TensorSource};
use crate::fsio::{read_to_string_limited, ReadError};
use crate::limits::{MAX_CONFIG_JSON_BYTES, MAX_INDEX_JSON_BYTES};
use crate::model::{expected_blocks, lay_out_block, ModelSpec};

const CONFIG: &str = "config.json";
const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// An opened model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub config: HfConfig,
    /// Named after the directory's final component; dtypes as stored.
    pub spec: ModelSpec,
    /// Every tensor found (extra ones such as `rotary_emb.inv_freq` included).
    pub tensors: BTreeMap<String, TensorSource>,
}

/// Where the weights live: how a missing tensor's search is reported.
enum Weights {
    Single(PathBuf),
    Sharded { index: PathBuf, weight_map: BTreeMap<String, PathBuf> },
}

impl ModelDir {
    /// Reads `config.json` and the safetensors headers of `dir`, and checks
    /// every tensor the forward pass needs.
    pub fn open(dir: &Path) -> Result<ModelDir, HfError> {
        if !dir.is_dir() {
            return Err(HfError::Dir {
                dir: dir.to_path_buf(),
                problem: format!("not a directory (expected one holding {CONFIG} and {SINGLE} or {INDEX})"),
            });
        }
        let config_path = dir.join(CONFIG);
        let text = read_limited(CONFIG, &config_path, MAX_CONFIG_JSON_BYTES)?;
        let config = parse_config(&text, &config_path.display().to_string())?;
        let (weights, tensors) = read_weights(dir)?;
        let spec = build_spec(dir_name(dir), &config, &weights, &tensors)?;
        Ok(ModelDir { dir: dir.to_path_buf(), config, spec, tensors })
    }

    /// Where `tensor` (a checkpoint name) is on disk.
    pub fn source(&self, tensor: &str) -> Option<&TensorSource> {
        self.tensors.get(tensor)
    }
}

/// Reads the headers of `model.safetensors`, or of every shard the index names.
fn read_weights(dir: &Path) -> Result<(Weights, BTreeMap<String, TensorSource>), HfError> {
    let single = dir.join(SINGLE);
    if single.is_file() {
        let tensors = read_safetensors_header(&single)?;
        return Ok((Weights::Single(single), tensors));
    }
    let index = dir.join(INDEX);
    if !index.is_file() {
        return Err(HfError::Dir {
            dir: dir.to_path_buf(),
            problem: format!(
                "neither {SINGLE} nor {INDEX} found (expected safetensors weights; .bin checkpoints are not supported)"
            ),
        });
    }
    let weight_map = read_index(dir, &index)?;
    let mut shards = BTreeSet::new();
    for (tensor, shard) in &weight_map {
        if shards.insert(shard) && !shard.is_file() {
            return Err(HfError::MissingShard { index, shard: shard.clone(), tensor: tensor.clone() });
        }
    }
    let headers = shards
        .into_iter()
        .map(|s| Ok((s.clone(), read_safetensors_header(s)?)))
        .collect::<Result<BTreeMap<_, _>, HfError>>()?;
    // The index is authoritative: a tensor is taken from the shard it names.
    let tensors =
        weight_map.iter().filter_map(|(name, shard)| Some((name.clone(), headers[shard].get(name)?.clone()))).collect();
    Ok((Weights::Sharded { index, weight_map }, tensors))
}

/// The text of the JSON file `path` (`what`: its role, for errors), refused over `limit` bytes.
fn read_limited(what: &'static str, path: &Path, limit: u64) -> Result<String, HfError> {
    read_to_string_limited(path, limit).map_err(|e| match e {
        ReadError::Io(error) => HfError::Read { what, path: path.to_path_buf(), error },
        ReadError::TooLarge { size, limit } => HfError::TooLarge { what, path: path.to_path_buf(), size, limit },
    })
}

/// `model.safetensors.index.json` → tensor name → shard path (inside `dir`).
fn read_index(dir: &Path, index: &Path) -> Result<BTreeMap<String, PathBuf>, HfError> {
    let err = |problem: String| HfError::Index { path: index.to_path_buf(), problem };
    let text = read_limited("index", index, MAX_INDEX_JSON_BYTES)?;
    let json: Value = serde_json::from_str(&text).map_err(|e| err(format!("malformed JSON: {e}")))?;
    let Some(map) = json.get("weight_map") else {
        return Err(err("field `weight_map` missing (expected an object mapping tensor names to shard files)".into()));
    };
    let Value::Object(map) = map else {
        return Err(err(format!(
            "field `weight_map` is {map}; expected an object mapping tensor names to shard files"
        )));
    };
    map.iter()
        .map(|(tensor, shard)| {
            let name = shard.as_str().filter(|s| is_plain_relative(Path::new(s))).ok_or_else(|| {
                err(format!(
                    "weight_map entry `{tensor}` is {shard}; expected a shard file name inside the model directory"
                ))
            })?;
            Ok((tensor.clone(), dir.join(name)))
        })
        .collect()
}

/// A path that stays inside the directory it is joined to.
fn is_plain_relative(p: &Path) -> bool {
    p.components().next().is_some() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The block table, after checking each expected tensor's presence, shape and dtype.
fn build_spec(
    name: String,
    config: &HfConfig,
    weights: &Weights,
    tensors: &BTreeMap<String, TensorSource>,
) -> Result<ModelSpec, HfError> {
    let expected = expected_blocks(&config.arch);
    for block in &expected {
        for t in &block.tensors {
            let Some(found) = tensors.get(&t.name) else {
                return Err(HfError::MissingTensor {
                    tensor: t.name.clone(),
                    block: block.name.clone(),
                    searched: searched(weights, &t.name),
                });
            };
            if found.shape != t.shape {
                return Err(HfError::WrongShape {
                    tensor: t.name.clone(),
                    file: found.file.clone(),
                    expected: t.shape.clone(),
                    found: found.shape.clone(),
                });
            }
            if found.dtype != config.dtype {
                return Err(HfError::WrongDtype {
                    tensor: t.name.clone(),
                    file: found.file.clone(),
                    expected: config.dtype,
                    found: found.dtype,
                });
            }
        }
    }
    let blocks = expected.iter().map(|b| lay_out_block(b, |t| tensors[&t.name].dtype)).collect();
    Ok(ModelSpec { name, dtype: config.dtype, arch: config.arch.clone(), blocks })
}

/// The file(s) a missing tensor was looked for in.
fn searched(weights: &Weights, tensor: &str) -> String {
    match weights {
        Weights::Single(path) => path.display().to_string(),
        Weights::Sharded { index, weight_map } => match weight_map.get(tensor) {
            Some(shard) => format!("{} (its shard according to {})", shard.display(), index.display()),
            None => format!("{} (its weight_map does not name it)", index.display()),
        },
    }
}

/// The final component of a directory path (`.` and `..` resolved).
fn dir_name(path: &Path) -> String {
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    named(path)
        .filter(|n| n != "." && n != "..")
        .or_else(|| path.canonicalize().ok().and_then(|p| named(&p)))
        .unwrap_or_else(|| "model".to_string())
}

#[cfg(test)]
#[path = "dir_tests.rs"]
mod tests;
