//! `djinn-exec --interactive` through its library entry point
//! (`djinn_runtime::exec::run_with_stdin`, what the binary runs) with the
//! conversation piped in: each turn is the model's chat template over the whole
//! history, the KV cache carried over between turns gives the tokens a full
//! re-prefill gives, `/reset`, `/exit` and the end of the input behave, and a
//! conversation that outgrows the plan is told so and goes on.
//!
//! The fixture ships no chat template; these tests add a Llama 2 style one
//! (written for them) to a copy of it.

use djinn_core::plan::Strategy;
use djinn_runtime::chat::{ChatTemplate, Message};
use djinn_runtime::exec::{self, Outcome, Stdin};
use djinn_runtime::interactive::TurnReport;
use djinn_runtime::tokenizer::Tokenizer;
use serde_json::Value;

use super::*;

/// System, user and assistant turns in the style of Llama 2 chat.
const TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}\
{% set rest = messages[1:] %}{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}\
{% for m in rest %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] {% if loop.first and sys %}<<SYS>> {{ sys.strip() }} <</SYS>> {% endif %}\
{{ m['content'].strip() }} [/INST]{% elif m['role'] == 'assistant' %} {{ m['content'].strip() }} {{ eos_token }}\
{% else %}{{ raise_exception('roles are user and assistant after an optional system message') }}{% endif %}{% endfor %}";

/// A copy of fixture `name` with [`TEMPLATE`], and plans for it.
struct Chat {
    scratch: Scratch,
    model: PathBuf,
}

impl Chat {
    fn new(test: &str, name: &str) -> Chat {
        Chat::with_template(test, name, TEMPLATE)
    }

    fn with_template(test: &str, name: &str, template: &str) -> Chat {
        let scratch = Scratch::new(test);
        let model = scratch.copy_fixture(name);
        let path = model.join("tokenizer_config.json");
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["chat_template"] = Value::String(template.into());
        std::fs::write(&path, config.to_string()).unwrap();
        Chat { scratch, model }
    }

    /// A plan for the model, saved in the scratch directory.
    fn plan(&self, name: &str, strategy: Strategy, prompt_len: u64, max_seq_len: u64) -> PathBuf {
        let path = self.scratch.0.join(format!("{strategy:?}-{prompt_len}-{max_seq_len}.toml"));
        plan_for(name, strategy, None, prompt_len, max_seq_len).save(&path).unwrap();
        path
    }

    fn argv(&self, plan: &Path, args: &[&str]) -> Vec<String> {
        ["djinn-exec", plan.to_str().unwrap(), "--weights", self.model.to_str().unwrap()]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    }

    /// `djinn-exec --interactive args…` with `input` piped to stdin.
    fn converse(&self, plan: &Path, input: &str, args: &[&str]) -> Conversation {
        let argv = self.argv(plan, &[&["--interactive"], args].concat());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin = std::io::Cursor::new(input.as_bytes().to_vec());
        let outcome = exec::run_with_stdin(argv, Stdin { input: &mut stdin, terminal: false }, &mut out, &mut err)
            .unwrap_or_else(|e| panic!("djinn-exec --interactive {args:?}: {e:#}"));
        let Outcome::Chat(turns) = outcome else { panic!("--interactive ran one generation") };
        Conversation { turns, stdout: String::from_utf8(out).unwrap(), stderr: String::from_utf8(err).unwrap() }
    }

    /// The tokens of one `djinn-exec` run (not interactive).
    fn once(&self, plan: &Path, args: &[&str]) -> Vec<u32> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        exec::run(self.argv(plan, args), &mut out, &mut err).unwrap_or_else(|e| panic!("{args:?}: {e:#}")).tokens
    }

    /// The tokens of one run on the token ids of `text` (a rendered conversation):
    /// the whole conversation prefilled from position 0.
    fn once_rendered(&self, plan: &Path, text: &str, args: &[&str]) -> Vec<u32> {
        let tok = Tokenizer::load(&self.model, None, Some(1)).unwrap();
        let ids = tok.encode_rendered(text).unwrap();
        let file = self.scratch.0.join("ids.txt");
        std::fs::write(&file, ids.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ")).unwrap();
        self.once(plan, &[&["--prompt-ids", file.to_str().unwrap()], args].concat())
    }

    fn render(&self, messages: &[Message]) -> String {
        ChatTemplate::load(&self.model).unwrap().render(messages, true).unwrap()
    }
}

struct Conversation {
    turns: Vec<TurnReport>,
    stdout: String,
    stderr: String,
}

fn reply(t: &TurnReport) -> &str {
    t.report.text.as_deref().expect("a chat has a tokenizer")
}

/// Two turns: the first is what `--chat` gives for the same message; the
/// second's prompt is the template over the whole history (the first reply as
/// printed, trimmed), and its reply, prefilled after what the KV cache kept of
/// the first turn, is the reply of that prompt prefilled whole. Piped, stdout
/// holds the replies alone, a line each, and stderr one report line a turn;
/// `--json` one object a turn. The plan's `prompt_len` of 8 makes the second
/// prefill several passes.
#[test]
fn a_second_turn_is_the_whole_history_and_reusing_the_cache_changes_no_token() {
    let chat = Chat::new("interactive_two_turns", MHA);
    let plan = chat.plan(MHA, Strategy::Djinn, 8, 256);
    let json = chat.scratch.0.join("turns.jsonl");
    let flags = ["--system", "Be brief.", "--max-new-tokens", "12"];
    let c = chat.converse(
        &plan,
        "Once upon a time\nTell me\\\nmore\n",
        &[&flags[..], &["--json", json.to_str().unwrap()]].concat(),
    );
    assert_eq!(c.turns.len(), 2, "{}", c.stderr);
    let (one, two) = (&c.turns[0], &c.turns[1]);
    assert_eq!(one.report.tokens, chat.once(&plan, &[&flags[..], &["--chat", "Once upon a time"]].concat()));
    assert_eq!(one.cached_tokens, 0);
    assert_eq!(one.prompt_text, "<s>[INST] <<SYS>> Be brief. <</SYS>> Once upon a time [/INST]");

    let history = [
        Message::new("system", "Be brief."),
        Message::new("user", "Once upon a time"),
        Message::new("assistant", reply(one).trim()),
        Message::new("user", "Tell me\nmore"),
    ];
    assert_eq!(two.prompt_text, chat.render(&history));
    assert!(
        two.cached_tokens >= one.report.prompt_tokens && two.cached_tokens < two.report.prompt_tokens,
        "the first turn's prompt is reused from the cache: {} of {} (the first prompt was {})",
        two.cached_tokens,
        two.report.prompt_tokens,
        one.report.prompt_tokens
    );
    assert_eq!(two.report.tokens, chat.once_rendered(&plan, &two.prompt_text, &flags[2..]), "reuse vs re-prefill");
    assert_eq!((one.turn, two.turn), (1, 2));

    assert_eq!(c.stdout, format!("{}\n{}\n", reply(one), reply(two)));
    let lines: Vec<&str> = c.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "piped: one report line a turn, nothing else:\n{}", c.stderr);
    assert!(lines[1].starts_with("[turn 2: ") && lines[1].contains("TTFT") && lines[1].contains("tokens/s"));
    assert!(lines[1].contains(&format!("({} from the KV cache", two.cached_tokens)), "{}", lines[1]);

    let written: Vec<Value> =
        std::fs::read_to_string(&json).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(written.len(), 2);
    for (w, t) in written.iter().zip(&c.turns) {
        assert_eq!(w["turn"], t.turn);
        assert_eq!(w["prompt_text"], t.prompt_text.as_str());
        assert_eq!(w["cached_tokens"], t.cached_tokens);
        assert_eq!(w["tokens"], serde_json::json!(t.report.tokens));
        assert_eq!(w["text"], reply(t));
        assert!(w["ttft_ms"].as_f64().unwrap() > 0.0);
    }
}

/// With a template that writes the reply as it is (no space before it), the
/// fixture's first reply re-tokenizes to the tokens generated: the second turn
/// finds the whole first turn in the cache but the last token chosen, which
/// never went through a decode pass, and still replies as a full re-prefill.
#[test]
fn a_reply_that_re_tokenizes_as_generated_is_reused_whole_but_its_last_token() {
    let raw = "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] {{ m['content'] }} [/INST]\
{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}";
    let chat = Chat::with_template("interactive_raw", MHA, raw);
    let plan = chat.plan(MHA, Strategy::Djinn, 16, 256);
    let c = chat.converse(&plan, "Hi there\nTell me more\n", &["--max-new-tokens", "8"]);
    let (one, two) = (&c.turns[0], &c.turns[1]);
    let tok = Tokenizer::load(&chat.model, None, Some(1)).unwrap();
    let ids = tok.encode_rendered(&two.prompt_text).unwrap();
    let first: Vec<u32> =
        tok.encode_rendered(&one.prompt_text).unwrap().into_iter().chain(one.report.tokens.clone()).collect();
    assert!(ids.starts_with(&first), "the fixture's first reply re-tokenizes as generated: {ids:?} {first:?}");
    assert_eq!(one.report.stop_reason, "max_new_tokens");
    assert_eq!(two.cached_tokens, one.report.prompt_tokens + one.report.generated_tokens - 1);
    assert_eq!(two.report.tokens, chat.once_rendered(&plan, &two.prompt_text, &["--max-new-tokens", "8"]));
}

/// The cache carried across turns under adversarial replay of a plan that
/// streams every layer (its events bind across generations) gives what
/// in-order replay of the resident plan gives.
#[test]
fn streamed_plans_under_adversarial_replay_converse_as_resident_ones() {
    let chat = Chat::new("interactive_adversarial", GQA);
    let input = "Hi\nWhat next?\nAnd then?\n";
    let args = ["--max-new-tokens", "6"];
    let resident = chat.converse(&chat.plan(GQA, Strategy::Djinn, 16, 256), input, &args);
    let streamed = chat.converse(
        &chat.plan(GQA, Strategy::StreamAll, 16, 256),
        input,
        &[&args[..], &["--replay", "adversarial"]].concat(),
    );
    assert_eq!(resident.turns.len(), 3);
    for (r, s) in resident.turns.iter().zip(&streamed.turns) {
        assert_eq!((r.report.tokens.as_slice(), r.cached_tokens), (s.report.tokens.as_slice(), s.cached_tokens));
        assert!(s.report.copy_bytes_per_token.unwrap_or(1.0) > 0.0, "every layer streams");
    }
    assert!(resident.turns[2].cached_tokens > resident.turns[1].report.prompt_tokens / 2);
}

/// `/reset` forgets the history (the system message stays) and the next turn
/// renders as a first one, its prompt found in the cache but for the last
/// token; `/exit` stops reading; the end of the input ends the conversation
/// cleanly, a last line without a newline still a turn, blank lines skipped.
#[test]
fn reset_exit_and_the_end_of_input() {
    let chat = Chat::new("interactive_reset", MHA);
    let plan = chat.plan(MHA, Strategy::Djinn, 64, 256);
    let args = ["--system", "Be brief.", "--max-new-tokens", "4"];
    let c = chat.converse(&plan, "Hello\n\n   \nMore\n/reset\nHello\n/exit\nnever read\n", &args);
    assert_eq!(c.turns.len(), 3, "{}", c.stderr);
    assert!(c.stderr.contains("[conversation cleared]"), "{}", c.stderr);
    let (first, again) = (&c.turns[0], &c.turns[2]);
    assert_eq!(again.prompt_text, first.prompt_text, "after /reset the history is the system message alone");
    assert_eq!(again.report.tokens, first.report.tokens);
    assert_eq!(again.cached_tokens, again.report.prompt_tokens - 1, "all but the last prompt token were in the cache");
    assert_eq!(again.turn, 3);

    let c = chat.converse(&plan, "Hello\nMore", &args);
    assert_eq!(c.turns.len(), 2, "a last line without a newline is a message");
    assert!(c.turns[1].prompt_text.ends_with("More [/INST]"));
    let c = chat.converse(&plan, "", &args);
    assert!(c.turns.is_empty() && c.stdout.is_empty() && c.stderr.is_empty());
}

/// A message that would take the conversation past the plan's `max_seq_len`
/// is not sent: the loop says how long it would be, what the plan holds and
/// what helps, and reads on; `/reset` makes room again.
#[test]
fn a_conversation_that_outgrows_the_plan_is_told_so_and_goes_on() {
    let chat = Chat::new("interactive_overflow", MHA);
    let plan = chat.plan(MHA, Strategy::Djinn, 16, 48);
    // Over 48 tokens on its own.
    let long = format!("a story about a dragon {}", "who lived on a mountain far away ".repeat(8));
    let input = format!("Hi\n{long}\nHi again\n/reset\n{long}\n");
    let c = chat.converse(&plan, &input, &["--max-new-tokens", "8"]);
    let notes: Vec<&str> = c.stderr.lines().filter(|l| l.starts_with("[not sent")).collect();
    assert_eq!(notes.len(), 2, "{}", c.stderr);
    for n in &notes {
        assert!(n.contains("max_seq_len of 48") && n.contains("--max-seq-len") && n.contains("tokens"), "{n}");
    }
    assert!(notes[0].contains("/reset"), "mid-conversation, /reset helps: {}", notes[0]);
    assert!(!notes[1].contains("/reset"), "a first message too long for the plan: {}", notes[1]);
    // "Hi", then "Hi again" after the long message was dropped; nothing after /reset fits.
    assert_eq!(c.turns.len(), 2, "{}", c.stderr);
    assert!(!c.turns[1].prompt_text.contains("dragon"), "the message not sent is not in the history");
    assert!(c.turns.iter().all(|t| t.report.prompt_tokens <= 48));
}

/// Bad combinations and a model without a chat template get the project's errors.
#[test]
fn interactive_refuses_other_inputs_and_models_without_a_template() {
    let chat = Chat::new("interactive_errors", MHA);
    let plan = chat.plan(MHA, Strategy::Djinn, 64, 256);
    let run = |args: &[&str]| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin = std::io::Cursor::new(b"Hi\n".to_vec());
        let stdin = Stdin { input: &mut stdin, terminal: false };
        match exec::run_with_stdin(chat.argv(&plan, args), stdin, &mut out, &mut err) {
            Ok(_) => panic!("{args:?} accepted"),
            Err(e) => format!("{e:#}"),
        }
    };
    let e = run(&["--interactive", "--prompt", "x"]);
    assert!(e.contains("--interactive") && e.contains("--prompt") && e.contains("cannot be used with"), "{e}");
    let e = run(&["--interactive", "--chat", "x"]);
    assert!(e.contains("cannot be used with"), "{e}");
    std::fs::copy(fixture(MHA).join("tokenizer_config.json"), chat.model.join("tokenizer_config.json")).unwrap();
    let e = run(&["--interactive"]);
    assert!(e.contains("tokenizer_config.json") && e.contains("no chat_template"), "{e}");
    // The one-generation entry point has no stdin to read.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e = exec::run(chat.argv(&plan, &["--interactive"]), &mut out, &mut err).unwrap_err().to_string();
    assert!(e.contains("stdin"), "{e}");
}

/// A reply that fills the plan's `max_seq_len` stops there and says so; the
/// next message cannot be sent until `/reset`, after which the conversation
/// starts over as it began.
#[test]
fn a_reply_that_fills_the_cache_says_so_and_reset_makes_room() {
    let chat = Chat::new("interactive_full", MHA);
    let plan = chat.plan(MHA, Strategy::Djinn, 16, 48);
    let c = chat.converse(&plan, "Hi\nHi again\n/reset\nHi\n", &["--max-new-tokens", "100", "--ignore-eos"]);
    assert_eq!(c.turns.len(), 2, "{}", c.stderr);
    let (first, again) = (&c.turns[0], &c.turns[1]);
    assert_eq!(first.report.stop_reason, "max_seq_len");
    assert_eq!(
        first.report.prompt_tokens + first.report.generated_tokens,
        48 + 1,
        "the last token chosen is not cached"
    );
    assert!(c.stderr.contains("[the reply stopped at the plan's max_seq_len of 48 tokens"), "{}", c.stderr);
    assert!(c.stderr.lines().any(|l| l.starts_with("[not sent") && l.contains("/reset")), "{}", c.stderr);
    assert_eq!((again.prompt_text.as_str(), &again.report.tokens), (first.prompt_text.as_str(), &first.report.tokens));
}
