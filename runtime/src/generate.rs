//! Generation: prefill the prompt, then one decode pass per new token.
//!
//! The plan's prefill phase is sized for `prompt_len` tokens; a longer
//! prompt (up to `max_seq_len`) runs as several prefill passes of up to
//! `prompt_len` tokens each, each attending over the cache the ones before it
//! filled — the same computation in pieces, and one weight stream per piece
//! rather than one per token ([`prefill_chunks`]). A prompt longer than `max_seq_len` is refused,
//! and generation stops when the KV cache is full.
//!
//! [`generate_continuing`] continues a sequence whose first tokens the
//! backend's KV cache already holds from earlier passes (a chat's earlier
//! turns): only the rest is prefilled, from that position on, exactly as the
//! later chunks of a long prompt are.
//!
//! Without a repetition penalty the choice needs no logits on the host:
//! [`generate`] then asks the backend for the chosen token alone
//! ([`crate::backend::Backend::greedy_token`], or
//! [`crate::backend::Backend::sample_token`] with the uniform drawn here
//! from the seeded [`Rng`]: on a GPU, an argmax or the sampling kernel on the
//! device and four bytes back per step). A repetition penalty (which needs
//! the sequence, kept here), and [`generate_with_logits`] (for callers that
//! inspect the logits), bring the `[vocab]` row back each step and choose
//! with [`sample_f32`]. Both draw one uniform per sampled token, so a seed
//! gives the same tokens either way.

use std::time::Instant;

use djinn_core::plan::{PhaseName, Plan};
use djinn_kernels::{sample_f32, Rng, SampleParams};
use thiserror::Error;

use crate::backend::{Backend, Pass};
use crate::replay::{Replay, ReplayError};

/// How the next token is chosen ([`SampleParams`]: `temperature <= 0` is
/// greedy) and the sampler's seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    /// 0: no top-k cut.
    pub top_k: usize,
    /// 0: no min-p cut.
    pub min_p: f32,
    /// 1: no penalty.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Sampling {
    pub fn greedy() -> Sampling {
        Sampling { temperature: 0.0, top_p: 1.0, top_k: 0, min_p: 0.0, repetition_penalty: 1.0, seed: 0 }
    }

    /// Whether the choice is the plain argmax of the logits (no temperature
    /// (0, or not a number, as [`sample_f32`] takes it), no penalty).
    pub fn is_greedy(&self) -> bool {
        (self.temperature.is_nan() || self.temperature <= 0.0) && self.repetition_penalty == 1.0
    }

    fn params(&self) -> SampleParams {
        SampleParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
        }
    }

    /// Whether the values are ones sampling is defined for, else a message
    /// naming the flag and its range: a NaN temperature used to sample garbage,
    /// and an infinite or negative one, or a top-p outside (0, 1], to be
    /// clamped or ignored without a word.
    pub fn check(&self) -> Result<(), String> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(format!("--temperature {t} is not a finite number >= 0 (0 is greedy)"));
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            return Err(format!("--top-p {p} is outside (0, 1] (1 keeps every token)"));
        }
        let m = self.min_p;
        if !(0.0..=1.0).contains(&m) {
            return Err(format!("--min-p {m} is outside [0, 1] (0 keeps every token)"));
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(format!("--repetition-penalty {r} is not a finite number > 0 (1 is none)"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: u64,
    pub sampling: Sampling,
    /// Generation stops when one of these is sampled (it is not emitted).
    pub stop_tokens: Vec<u32>,
}

#[derive(Debug, Error)]
pub enum GenerateError {
    #[error("{0}")]
    Replay(ReplayError),
    #[error("the prompt is empty (not even a BOS token)")]
    EmptyPrompt,
    #[error(
        "the prompt is {prompt} tokens, longer than the plan's max_seq_len of {max_seq_len}; \
         shorten the prompt or recompile the plan with a larger --max-seq-len"
    )]
    PromptTooLong { prompt: u64, max_seq_len: u64 },
    #[error(
        "token id {token} at prompt position {pos} is outside the model's vocabulary of {vocab} (wrong tokenizer?)"
    )]
    Token { token: u32, pos: usize, vocab: u64 },
    #[error("cannot write the generated text: {0}")]
    Output(std::io::Error),
    #[error(
        "{cached} of the prompt's {prompt} tokens are said to be in the KV cache; at least the last must be prefilled"
    )]
    Cached { cached: usize, prompt: usize },
}

impl From<ReplayError> for GenerateError {
    fn from(e: ReplayError) -> GenerateError {
        GenerateError::Replay(e)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxNewTokens,
    /// A stop token (EOS) was sampled.
    Eos(u32),
    /// The KV cache holds `max_seq_len` tokens.
    MaxSeqLen,
    /// The caller stopped it (its callback returned [`Flow::Stop`]: a stop string, say).
    Caller,
}

/// What a token callback asks of the generation loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop after this token (it is kept).
    Stop,
}

/// One new token and the logits it was chosen from.
#[derive(Debug)]
pub struct Emitted<'a> {
    /// 0 for the first generated token.
    pub index: usize,
    pub token: u32,
    /// The logits the token was chosen from, where they came to the host:
    /// always with [`generate_with_logits`], and with [`generate`] when it
    /// applies a repetition penalty.
    pub logits: Option<&'a [f32]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub prompt_tokens: usize,
    /// Of those, how many were already in the KV cache ([`generate_continuing`]) and not prefilled.
    pub cached_tokens: usize,
    /// The generated tokens (a stop token excluded).
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    /// Prompt in, first token chosen.
    pub ttft_ms: f64,
    /// One entry per decode pass after the first token.
    pub decode_ms: Vec<f64>,
    /// Bytes the copy lane moved in each of those decode passes.
    pub decode_copy_bytes: Vec<u64>,
}

impl Generation {
    /// How many tokens of the sequence the KV cache holds now, at positions
    /// `0..n`: the prompt and each generated token that went through a decode
    /// pass (one per entry of `decode_ms`). The last token chosen has not,
    /// nor a stop token.
    pub fn cache_len(&self) -> usize {
        self.prompt_tokens + self.decode_ms.len()
    }
}

/// Runs `prompt` through the plan and generates; `on_token` sees each new token as it is chosen.
pub fn generate<B: Backend>(
    replay: &Replay,
    backend: &mut B,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_token: impl FnMut(&Emitted) -> std::io::Result<Flow>,
) -> Result<Generation, GenerateError> {
    run(replay, backend, prompt, 0, opts, false, on_token)
}

/// [`generate`] for a `prompt` whose first `cached` tokens are already in
/// `backend`'s KV cache at positions `0..cached` (earlier passes on this
/// backend put them there; the caller keeps track of which tokens they were):
/// only `prompt[cached..]` is prefilled, from position `cached`. What is in
/// the cache beyond `cached` is overwritten or never attended to. The
/// repetition penalty sees the whole prompt, as [`generate`] would.
pub fn generate_continuing<B: Backend>(
    replay: &Replay,
    backend: &mut B,
    prompt: &[u32],
    cached: usize,
    opts: &GenerateOptions,
    on_token: impl FnMut(&Emitted) -> std::io::Result<Flow>,
) -> Result<Generation, GenerateError> {
    run(replay, backend, prompt, cached, opts, false, on_token)
}

/// [`generate`], with every step's logits brought to the host and shown to `on_token`.
pub fn generate_with_logits<B: Backend>(
    replay: &Replay,
    backend: &mut B,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_token: impl FnMut(&Emitted) -> std::io::Result<Flow>,
) -> Result<Generation, GenerateError> {
    run(replay, backend, prompt, 0, opts, true, on_token)
}

fn run<B: Backend>(
    replay: &Replay,
    backend: &mut B,
    prompt: &[u32],
    cached: usize,
    opts: &GenerateOptions,
    keep_logits: bool,
    mut on_token: impl FnMut(&Emitted) -> std::io::Result<Flow>,
) -> Result<Generation, GenerateError> {
    let shape = replay.plan().shape;
    let vocab = replay.plan().model.arch.vocab_size;
    let len = prompt.len() as u64;
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if len > shape.max_seq_len {
        return Err(GenerateError::PromptTooLong { prompt: len, max_seq_len: shape.max_seq_len });
    }
    if cached >= prompt.len() {
        return Err(GenerateError::Cached { cached, prompt: prompt.len() });
    }
    if let Some((pos, &token)) = prompt.iter().enumerate().find(|(_, &t)| t as u64 >= vocab) {
        return Err(GenerateError::Token { token, pos, vocab });
    }
    let mut rng = Rng::new(opts.sampling.seed);
    let params = opts.sampling.params();
    // The sequence so far, for the repetition penalty: the prompt, then each token chosen.
    let mut seen: Vec<u32> = prompt.to_vec();
    let on_host = keep_logits || opts.sampling.repetition_penalty != 1.0;
    // The next token, once the pass that computes its logits has been issued;
    // `logits` keeps them where they come to the host.
    let mut choose = |backend: &mut B, phase, seen: &[u32], logits: &mut Vec<f32>| -> Result<u32, ReplayError> {
        if on_host {
            *logits = replay.logits(backend, phase)?;
            return Ok(sample_f32(logits, &params, seen, &mut rng) as u32);
        }
        if opts.sampling.is_greedy() {
            return replay.greedy_token(backend, phase);
        }
        // sample_f32's one draw per token with a temperature, made here.
        replay.sample_token(backend, phase, &params, rng.uniform())
    };
    let pass = |tokens: &[u32], pos0: u64, phase| Pass { tokens: tokens.to_vec(), pos0, phase };

    let start = Instant::now();
    let mut logits = Vec::new();
    let chunks = prefill_chunks(replay.plan(), cached as u64, len);
    for (i, &(pos0, n)) in chunks.iter().enumerate() {
        replay.run_pass(backend, &pass(&prompt[pos0 as usize..][..n as usize], pos0, PhaseName::Prefill))?;
        // Only the last chunk's logits choose a token; the others are waited for like any pass.
        if i + 1 < chunks.len() {
            replay.logits(backend, PhaseName::Prefill)?;
        }
    }
    let mut gen = Generation {
        prompt_tokens: prompt.len(),
        cached_tokens: cached,
        tokens: Vec::new(),
        stop: StopReason::MaxNewTokens,
        ttft_ms: 0.0,
        decode_ms: Vec::new(),
        decode_copy_bytes: Vec::new(),
    };
    if opts.max_new_tokens == 0 {
        replay.logits(backend, PhaseName::Prefill)?;
        gen.ttft_ms = ms(start);
        return finish(replay, backend, gen);
    }
    let mut token = choose(backend, PhaseName::Prefill, &seen, &mut logits)?;
    gen.ttft_ms = ms(start);
    loop {
        if opts.stop_tokens.contains(&token) {
            gen.stop = StopReason::Eos(token);
            break;
        }
        let flow = on_token(&Emitted { index: gen.tokens.len(), token, logits: on_host.then_some(&logits[..]) })
            .map_err(GenerateError::Output)?;
        gen.tokens.push(token);
        if flow == Flow::Stop {
            gen.stop = StopReason::Caller;
            break;
        }
        if gen.tokens.len() as u64 >= opts.max_new_tokens {
            break;
        }
        // The token just chosen goes into the cache at this position.
        let pos = len + gen.tokens.len() as u64 - 1;
        if pos >= shape.max_seq_len {
            gen.stop = StopReason::MaxSeqLen;
            break;
        }
        let t = Instant::now();
        let copied = replay.run_pass(backend, &pass(&[token], pos, PhaseName::Decode))?;
        seen.push(gen.tokens[gen.tokens.len() - 1]);
        token = choose(backend, PhaseName::Decode, &seen, &mut logits)?;
        gen.decode_ms.push(ms(t));
        gen.decode_copy_bytes.push(copied);
    }
    finish(replay, backend, gen)
}

/// The end of a request: the warm copies for the next one. Every pass's result
/// has been read, so the compute lane is idle and the copies run while the
/// caller reports, waits for the next prompt or exits ([`Replay::warm`]).
fn finish<B: Backend>(replay: &Replay, backend: &mut B, gen: Generation) -> Result<Generation, GenerateError> {
    replay.warm(backend)?;
    Ok(gen)
}

/// The prefill passes, `(pos0, tokens)`, that take a sequence from `from`
/// tokens in the cache to `to`: `prompt_len` tokens each, the last the rest.
/// Prefill attention needs no score scratch on either backend (a streaming
/// softmax; where the GPU falls back to cuBLAS it takes the query rows in
/// chunks that fit the plan's scratch), so a pass far into the sequence is
/// as long as the first.
pub fn prefill_chunks(plan: &Plan, from: u64, to: u64) -> Vec<(u64, u64)> {
    let step = plan.shape.prompt_len.max(1);
    (from..to).step_by(step as usize).map(|pos0| (pos0, step.min(to - pos0))).collect()
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
