//! `djinn-exec --interactive`: a conversation read from stdin, one user turn
//! at a time, each rendered with the whole history through the model's chat
//! template and answered on the same backend.
//!
//! **Input.** One message per line; a line ending in a backslash continues on
//! the next (the backslash becomes a newline), so multi-line text can be typed
//! or piped. A message that is exactly `/reset` clears the history, `/exit`
//! (or end of input, Ctrl-D) ends the conversation, `/help` lists these; blank
//! messages are skipped. Nothing else is a command.
//!
//! **KV cache.** The backend's cache outlives a generation, and a prefill may
//! start at any position (a long prompt already runs as several prefill
//! passes), so a turn prefills only what the cache does not hold yet
//! ([`crate::generate::generate_continuing`]). [`Cache`] tracks which tokens
//! sit at positions `0..n`: the last prompt, then the reply tokens that went
//! through a decode pass. The next turn's tokens are compared with them and
//! the prefill starts at the first that differs: the template re-renders the
//! reply from its text, and the tokenizer need not give back the tokens that
//! were generated (nor a stop token, which never enters the cache), so reuse
//! ends wherever the two part. Rows past that position are overwritten or
//! never attended to. `/reset` clears the history, not the cache: a new
//! conversation still shares its opening (BOS, the system message) with it.
//!
//! **Sampling.** Each turn's sampler starts from `--seed` afresh, so the same
//! conversation replayed gives the same replies.
//!
//! **Context.** A turn whose conversation no longer fits the plan's
//! `max_seq_len` is not sent: the loop says how long it is, what the plan
//! holds and what helps, and reads the next message.
//!
//! The loop itself does not generate: [`converse`] is given a function that
//! runs one turn on a backend, so the reading, rendering and cache bookkeeping
//! are tested here without a model.

use std::io::{BufRead, Write};

use serde::Serialize;

use crate::chat::{ChatError, ChatTemplate, Message};
use crate::generate::{Generation, StopReason};
use crate::report::Report;
use crate::tokenizer::{Tokenizer, TokenizerError};

/// What one read of the input gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Message(String),
    Reset,
    Help,
    /// `/exit`, or the end of the input.
    Exit,
}

/// The commands, for `/help` (and `--help`).
pub const COMMANDS: &str = "/reset clears the conversation, /exit (or Ctrl-D) ends it; \
end a line with \\ to continue the message on the next line";

/// Reads the next message or command; blank messages are skipped.
/// `prompt` is called before each line is read with whether it continues a
/// message (to show a marker on a terminal).
pub fn read_input(input: &mut dyn BufRead, mut prompt: impl FnMut(bool)) -> std::io::Result<Input> {
    loop {
        let mut message = String::new();
        let mut continued = false;
        let mut ended = false;
        loop {
            prompt(continued);
            let mut line = String::new();
            if input.read_line(&mut line)? == 0 {
                ended = true;
                break;
            }
            let line = line.strip_suffix('\n').unwrap_or(&line);
            let line = line.strip_suffix('\r').unwrap_or(line);
            match line.strip_suffix('\\') {
                Some(part) => {
                    message.push_str(part);
                    message.push('\n');
                    continued = true;
                }
                None => {
                    message.push_str(line);
                    break;
                }
            }
        }
        match message.trim() {
            "" if ended => return Ok(Input::Exit),
            "" => continue,
            "/exit" => return Ok(Input::Exit),
            "/reset" => return Ok(Input::Reset),
            "/help" => return Ok(Input::Help),
            _ => return Ok(Input::Message(message)),
        }
    }
}

/// The conversation so far: the system message, then user and assistant turns.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    system: Option<String>,
    turns: Vec<Message>,
}

impl History {
    pub fn new(system: Option<&str>) -> History {
        History { system: system.map(str::to_string), turns: Vec::new() }
    }

    /// The messages with `user` as the next turn (not yet in the history).
    pub fn with_user(&self, user: &str) -> Vec<Message> {
        let system = self.system.iter().map(|s| Message::new("system", s));
        system.chain(self.turns.iter().cloned()).chain([Message::new("user", user)]).collect()
    }

    /// The prompt text for `user` as the next turn, the assistant's turn opened.
    pub fn render(&self, template: &ChatTemplate, user: &str) -> Result<String, ChatError> {
        template.render(&self.with_user(user), true)
    }

    /// Records a finished turn.
    pub fn push(&mut self, user: &str, assistant: &str) {
        self.turns.push(Message::new("user", user));
        self.turns.push(Message::new("assistant", assistant));
    }

    /// Forgets every turn (the system message stays).
    pub fn reset(&mut self) {
        self.turns.clear();
    }

    pub fn turns(&self) -> &[Message] {
        &self.turns
    }
}

/// The tokens the backend's KV cache holds, at positions `0..len`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cache {
    tokens: Vec<u32>,
}

impl Cache {
    /// How many leading tokens of `prompt` need no prefill: those equal to
    /// the cache's, but never all of them (the last prompt token's pass gives
    /// the logits of the first reply token).
    pub fn reusable(&self, prompt: &[u32]) -> usize {
        let common = self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        common.min(prompt.len().saturating_sub(1))
    }

    /// After `gen` ran on `prompt`: what the cache holds now.
    pub fn update(&mut self, prompt: &[u32], gen: &Generation) {
        self.tokens.clear();
        self.tokens.extend_from_slice(prompt);
        self.tokens.extend_from_slice(&gen.tokens);
        self.tokens.truncate(gen.cache_len());
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// One turn's record: what `--json` writes (one line per turn) and what
/// [`crate::exec::run_with_stdin`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnReport {
    /// 1 for the first turn; `/reset` does not restart the count.
    pub turn: usize,
    /// The conversation's prompt text as the template rendered it.
    pub prompt_text: String,
    /// Prompt tokens found in the KV cache and not prefilled again.
    pub cached_tokens: usize,
    #[serde(flatten)]
    pub report: Report,
}

impl TurnReport {
    /// The one line on stderr after each reply.
    pub fn summary(&self) -> String {
        let r = &self.report;
        let decode = r.decode_ms_per_token.map_or("-".to_string(), |v| format!("{v:.2} ms/token"));
        let rate = r.tokens_per_s.map_or("-".to_string(), |v| format!("{v:.2} tokens/s"));
        format!(
            "[turn {}: {} prompt tokens ({} from the KV cache, {} prefilled), {} generated (stopped: {}); \
             TTFT {:.2} ms, decode {decode}, {rate}]",
            self.turn,
            r.prompt_tokens,
            self.cached_tokens,
            r.prompt_tokens - self.cached_tokens,
            r.generated_tokens,
            r.stop_reason,
            r.ttft_ms,
        )
    }
}

/// One reply, as the function given to [`converse`] returns it: the
/// generation, its text as printed (a stop string cut off) and its report.
pub struct Reply {
    pub generation: Generation,
    pub text: String,
    pub report: Report,
}

/// What the loop needs besides the backend.
pub struct Chat<'a> {
    pub template: &'a ChatTemplate,
    pub tokenizer: &'a Tokenizer,
    pub system: Option<&'a str>,
    pub max_seq_len: u64,
    /// stdin is a terminal: show prompt markers and a hint on stderr.
    pub terminal: bool,
}

/// Everything the loop can fail with (a turn's own errors come back as `E`).
#[derive(Debug)]
pub enum LoopError<E> {
    Chat(ChatError),
    Tokenizer(TokenizerError),
    Read(std::io::Error),
    Turn(E),
}

/// Runs the conversation: reads a message, renders the history with it,
/// has `reply(prompt, cached)` generate (streaming to stdout; the first
/// `cached` tokens of `prompt` are in the KV cache), records the turn and
/// hands it to `done` (with stderr, for the report); until `/exit` or the
/// end of the input.
pub fn converse<E>(
    chat: &Chat,
    input: &mut dyn BufRead,
    stderr: &mut dyn Write,
    mut reply: impl FnMut(&[u32], usize) -> Result<Reply, E>,
    mut done: impl FnMut(TurnReport, &mut dyn Write) -> Result<(), E>,
) -> Result<(), LoopError<E>> {
    let mut history = History::new(chat.system);
    let mut cache = Cache::default();
    let mut turn = 0;
    if chat.terminal {
        let _ = writeln!(stderr, "djinn-exec chat: {COMMANDS}");
    }
    loop {
        let read = read_input(input, |continued| {
            if chat.terminal {
                let _ = write!(stderr, "{}", if continued { ". " } else { "> " });
                let _ = stderr.flush();
            }
        });
        let user = match read.map_err(LoopError::Read)? {
            Input::Exit => {
                if chat.terminal {
                    let _ = writeln!(stderr);
                }
                return Ok(());
            }
            Input::Reset => {
                history.reset();
                let _ = writeln!(stderr, "[conversation cleared]");
                continue;
            }
            Input::Help => {
                let _ = writeln!(stderr, "[{COMMANDS}]");
                continue;
            }
            Input::Message(m) => m,
        };
        let text = history.render(chat.template, &user).map_err(LoopError::Chat)?;
        let ids = chat.tokenizer.encode_rendered(&text).map_err(LoopError::Tokenizer)?;
        if ids.len() as u64 > chat.max_seq_len {
            let _ = writeln!(stderr, "[{}]", overflow(ids.len(), chat.max_seq_len, history.turns().is_empty()));
            continue;
        }
        let cached = cache.reusable(&ids);
        // The cache is stale from `cached` on the moment the prefill starts.
        cache.clear();
        let Reply { generation, text: reply_text, mut report } = reply(&ids, cached).map_err(LoopError::Turn)?;
        cache.update(&ids, &generation);
        turn += 1;
        if generation.stop == StopReason::MaxSeqLen {
            let _ = writeln!(
                stderr,
                "[the reply stopped at the plan's max_seq_len of {} tokens; /reset starts a new conversation]",
                chat.max_seq_len
            );
        }
        history.push(&user, reply_text.trim());
        report.text = Some(reply_text);
        let record = TurnReport { turn, prompt_text: text, cached_tokens: generation.cached_tokens, report };
        done(record, stderr).map_err(LoopError::Turn)?;
    }
}

/// Why a message was not sent: the conversation would not fit.
fn overflow(tokens: usize, max_seq_len: u64, first: bool) -> String {
    let help = if first {
        "shorten the message, or compile a plan with a larger --max-seq-len"
    } else {
        "/reset starts a new conversation, or compile a plan with a larger --max-seq-len"
    };
    format!(
        "not sent: with this message the conversation is {tokens} tokens, more than the plan's max_seq_len \
         of {max_seq_len} holds; {help}"
    )
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn read_all(text: &str) -> Vec<Input> {
        let mut input = Cursor::new(text.as_bytes().to_vec());
        let mut out = Vec::new();
        loop {
            let i = read_input(&mut input, |_| {}).unwrap();
            out.push(i.clone());
            if i == Input::Exit {
                return out;
            }
        }
    }

    fn msg(s: &str) -> Input {
        Input::Message(s.into())
    }

    #[test]
    fn lines_are_messages_a_trailing_backslash_continues_and_commands_are_whole_messages() {
        assert_eq!(
            read_all("Hi\r\nfirst\\\nsecond\\\n third\n\n  \n/reset\n /exit \nnot read\n"),
            [msg("Hi"), msg("first\nsecond\n third"), Input::Reset, Input::Exit]
        );
        assert_eq!(
            read_all("/help\n/reset please\nlast without newline"),
            [Input::Help, msg("/reset please"), msg("last without newline"), Input::Exit]
        );
        assert_eq!(read_all(""), [Input::Exit]);
        assert_eq!(read_all("dangling\\"), [msg("dangling\n"), Input::Exit]);
    }

    #[test]
    fn the_prompt_marker_is_asked_for_each_line_and_knows_continuations() {
        let mut input = Cursor::new(b"a\\\nb\n".to_vec());
        let mut asked = Vec::new();
        assert_eq!(read_input(&mut input, |c| asked.push(c)).unwrap(), msg("a\nb"));
        assert_eq!(asked, [false, true]);
    }

    #[test]
    fn history_renders_every_turn_and_reset_keeps_the_system_message() {
        let mut h = History::new(Some("Be brief."));
        assert_eq!(h.with_user("Hi"), [Message::new("system", "Be brief."), Message::new("user", "Hi")]);
        h.push("Hi", "Hello!");
        assert_eq!(
            h.with_user("Bye"),
            [
                Message::new("system", "Be brief."),
                Message::new("user", "Hi"),
                Message::new("assistant", "Hello!"),
                Message::new("user", "Bye")
            ]
        );
        h.reset();
        assert_eq!(h.with_user("Again").len(), 2);
        assert_eq!(History::new(None).with_user("x"), [Message::new("user", "x")]);
    }

    fn generation(prompt: usize, tokens: &[u32], decode_passes: usize, stop: StopReason) -> Generation {
        Generation {
            prompt_tokens: prompt,
            cached_tokens: 0,
            tokens: tokens.to_vec(),
            stop,
            ttft_ms: 1.0,
            decode_ms: vec![1.0; decode_passes],
            decode_copy_bytes: vec![0; decode_passes],
        }
    }

    #[test]
    fn the_cache_holds_the_prompt_and_the_reply_tokens_that_went_through_a_decode_pass() {
        let mut c = Cache::default();
        assert_eq!(c.reusable(&[1, 2, 3]), 0);
        // Three tokens chosen, the last never fed back: two decode passes.
        c.update(&[1, 2, 3], &generation(3, &[7, 8, 9], 2, StopReason::MaxNewTokens));
        assert_eq!(c.len(), 5);
        assert_eq!(c.reusable(&[1, 2, 3, 7, 8, 9, 2, 1, 4]), 5);
        // Retokenized differently from the second reply token on: reuse ends there.
        assert_eq!(c.reusable(&[1, 2, 3, 7, 10, 11]), 4);
        // Never the whole prompt: its last token must be prefilled for the logits.
        assert_eq!(c.reusable(&[1, 2, 3]), 2);
        assert_eq!(c.reusable(&[5]), 0);
        // An end token stops generation without entering the cache; every reply token did.
        c.update(&[1, 2], &generation(2, &[4, 5], 2, StopReason::Eos(2)));
        assert_eq!(c.reusable(&[1, 2, 4, 5, 2, 6]), 4);
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn an_overflow_names_the_length_the_plan_and_what_helps() {
        let m = overflow(300, 256, false);
        assert!(m.contains("300 tokens") && m.contains("max_seq_len of 256") && m.contains("/reset"), "{m}");
        assert!(m.contains("--max-seq-len"), "{m}");
        assert!(!overflow(300, 256, true).contains("/reset"));
    }
}
