//! What every front end of the executor does before its first token:
//! read the plan and verify it, open the weights against it, read the
//! model's `generation_config.json`, and turn the user's sampling values
//! into the [`Sampling`] a run uses.
//!
//! `djinn-exec` (one prompt, one run) and `djinn-serve` (one model, many
//! requests) both start here, so that a plan the one refuses the other
//! refuses with the same words, and a request without sampling values
//! samples exactly as `djinn-exec` without flags does.
//!
//! Each error carries its cause inline (no `source` chain), so a binary's
//! `{:#}` prints every cause once.

use std::path::{Path, PathBuf};

use djinn_core::hf::{parse_generation_config, GenerationConfig, HfError};
use djinn_core::plan::{Plan, PlanIoError};
use thiserror::Error;

use crate::generate::Sampling;
use crate::replay::{Replay, ReplayError, ReplayOptions};
use crate::stop_text::StopText;
use crate::tokenizer::{TextStream, Tokenizer, TokenizerError};
use crate::weights::{Weights, WeightsError};

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("{0}")]
    Plan(PlanIoError),
    #[error("refusing to run plan {}: {error}", path.display())]
    Replay { path: PathBuf, error: ReplayError },
    /// Boxed: a checkpoint's errors carry paths and tensor names, and every
    /// `Result` of this module would otherwise be as large.
    #[error("{0}")]
    Weights(Box<WeightsError>),
    #[error("{0}")]
    GenerationConfig(HfError),
}

/// A plan read from disk and verified, ready for replay.
pub fn load_plan(path: &Path) -> Result<(Plan, Replay), SessionError> {
    let plan = Plan::load(path).map_err(SessionError::Plan)?;
    let replay = Replay::new(&plan, ReplayOptions::default())
        .map_err(|error| SessionError::Replay { path: path.to_path_buf(), error })?;
    Ok((plan, replay))
}

/// A verified plan, the weights it runs on and the model's generation config:
/// all a backend is built from.
#[derive(Debug)]
pub struct Session {
    pub plan: Plan,
    pub replay: Replay,
    pub weights: Weights,
    pub generation: GenerationConfig,
}

impl Session {
    /// Reads and verifies the plan (cheap, and a bad plan should not cost a
    /// weight load), then checks the weights in `weights_dir` against it and
    /// reads the directory's generation config.
    pub fn open(plan: &Path, weights_dir: &Path) -> Result<Session, SessionError> {
        let (p, replay) = load_plan(plan)?;
        let weights = Weights::open(weights_dir, &p).map_err(|e| SessionError::Weights(Box::new(e)))?;
        let generation = generation_config(weights_dir).map_err(SessionError::GenerationConfig)?;
        Ok(Session { plan: p, replay, weights, generation })
    }

    /// The tokens that end generation: the model's, unless `ignore_eos`.
    pub fn stop_tokens(&self, ignore_eos: bool) -> Vec<u32> {
        if ignore_eos {
            Vec::new()
        } else {
            stop_tokens(&self.weights.config().eos_token_ids, &self.generation)
        }
    }
}

/// `generation_config.json` in the model directory, if it has one.
pub fn generation_config(dir: &Path) -> Result<GenerationConfig, HfError> {
    let path = dir.join("generation_config.json");
    if !path.is_file() {
        return Ok(GenerationConfig::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|error| HfError::Read {
        what: "generation_config.json",
        path: path.clone(),
        error,
    })?;
    parse_generation_config(&text, &path.display().to_string())
}

/// The sampling values a user gave (`None`: not given).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SamplingChoice {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: u64,
}

/// The user's values, and where one is not given, what the model's
/// generation config says: its sampling values only when it samples
/// (`do_sample`), as transformers' `generate` does; its repetition penalty
/// always. Unchecked: see [`Sampling::check`].
pub fn sampling(user: &SamplingChoice, g: &GenerationConfig) -> Sampling {
    let samples = g.do_sample == Some(true);
    let model = |v: Option<f32>| if samples { v } else { None };
    Sampling {
        temperature: user.temperature.or(model(g.temperature.or(Some(1.0)))).unwrap_or(0.0),
        top_p: user.top_p.or(model(g.top_p)).unwrap_or(1.0),
        top_k: user.top_k.or(if samples { Some(g.top_k.unwrap_or(50)) } else { None }).unwrap_or(0),
        min_p: user.min_p.or(model(g.min_p)).unwrap_or(0.0),
        repetition_penalty: user.repetition_penalty.or(g.repetition_penalty).unwrap_or(1.0),
        seed: user.seed,
    }
}

/// The end tokens of `config.json` and of `generation_config.json`, each once.
pub fn stop_tokens(config: &[u32], g: &GenerationConfig) -> Vec<u32> {
    let mut out = config.to_vec();
    for &t in &g.eos_token_ids {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Generated tokens as text, as it may be shown: decoded as a stream
/// ([`TextStream`]) and ending just before the first stop string
/// ([`StopText`]).
pub struct TextOut<'a> {
    tokenizer: &'a Tokenizer,
    stream: TextStream,
    out: StopText<'a>,
}

impl<'a> TextOut<'a> {
    /// Text continuing `prompt`, cut at any of `stops`.
    pub fn new(tokenizer: &'a Tokenizer, prompt: &[u32], stops: &'a [String]) -> TextOut<'a> {
        TextOut { tokenizer, stream: TextStream::new(prompt), out: StopText::new(stops) }
    }

    /// Adds generated token `id`; returns the text that may be shown now
    /// and whether a stop string has appeared (then nothing more is taken).
    pub fn push(&mut self, id: u32) -> Result<(String, bool), TokenizerError> {
        match self.stream.push(self.tokenizer, id)? {
            Some(piece) => Ok(self.out.push(&piece)),
            None => Ok((String::new(), false)),
        }
    }

    /// What is still held back once generation has ended: the decoder's
    /// last incomplete piece (unless the text was stopped, `stopped`, by a
    /// stop string, when nothing after it is wanted), then what the stop
    /// strings held back.
    pub fn finish(&mut self, stopped: bool) -> Result<String, TokenizerError> {
        let mut ready = String::new();
        if !stopped {
            if let Some(rest) = self.stream.finish(self.tokenizer)? {
                ready = self.out.push(&rest).0;
            }
        }
        ready.push_str(&self.out.flush());
        Ok(ready)
    }

    /// The whole text so far (once stopped, up to the stop string).
    pub fn text(&self) -> &str {
        &self.out.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_models_sampling_values_apply_only_when_it_samples_and_the_user_named_none() {
        let greedy = GenerationConfig { temperature: Some(0.6), top_p: Some(0.9), ..GenerationConfig::default() };
        assert_eq!(sampling(&SamplingChoice::default(), &greedy), Sampling::greedy());
        let hot = GenerationConfig { do_sample: Some(true), ..greedy.clone() };
        let s = sampling(&SamplingChoice::default(), &hot);
        assert_eq!((s.temperature, s.top_p, s.top_k), (0.6, 0.9, 50));
        let user = SamplingChoice { temperature: Some(0.0), top_k: Some(3), seed: 7, ..SamplingChoice::default() };
        let s = sampling(&user, &hot);
        assert_eq!((s.temperature, s.top_p, s.top_k, s.seed), (0.0, 0.9, 3, 7));
        let penalty = GenerationConfig { repetition_penalty: Some(1.2), ..GenerationConfig::default() };
        assert_eq!(sampling(&SamplingChoice::default(), &penalty).repetition_penalty, 1.2);
    }

    #[test]
    fn end_tokens_of_both_files_each_once() {
        let g = GenerationConfig { eos_token_ids: vec![2, 128009], ..GenerationConfig::default() };
        assert_eq!(stop_tokens(&[2], &g), [2, 128009]);
    }
}
