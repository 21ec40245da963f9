//! Chat prompts: a model's `chat_template` (the Jinja template in its
//! `tokenizer_config.json`) rendered with minijinja, as transformers'
//! `apply_chat_template` renders it: `trim_blocks` and `lstrip_blocks` on,
//! Python's string methods available (`.strip()`, `.startswith()`, … through
//! minijinja-contrib's pycompat), `raise_exception` an error naming the
//! template's message, `bos_token` and `eos_token` from the same file.

use std::path::{Path, PathBuf};

use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ChatError {
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: the model ships no chat_template (a base model?); use --prompt for plain text", path.display())]
    NoTemplate { path: PathBuf },
    #[error("{}: chat_template: {message}", path.display())]
    Template { path: PathBuf, message: String },
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message { role: role.into(), content: content.into() }
    }
}

/// A model's chat template and the special-token strings it refers to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    path: PathBuf,
    template: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// The template in `dir/tokenizer_config.json`.
    pub fn load(dir: &Path) -> Result<ChatTemplate, ChatError> {
        let path = dir.join("tokenizer_config.json");
        let text = std::fs::read_to_string(&path).map_err(|error| ChatError::Read { path: path.clone(), error })?;
        ChatTemplate::from_config(&text, &path)
    }

    /// Parses `tokenizer_config.json` text; `path` is named in every error.
    pub fn from_config(text: &str, path: &Path) -> Result<ChatTemplate, ChatError> {
        let fail = |message: String| ChatError::Config { path: path.to_path_buf(), message };
        let json: Value = serde_json::from_str(text).map_err(|e| fail(format!("malformed JSON: {e}")))?;
        let template = match json.get("chat_template") {
            None | Some(Value::Null) => return Err(ChatError::NoTemplate { path: path.to_path_buf() }),
            Some(Value::String(t)) => t.clone(),
            // Several named templates: the one called "default".
            Some(Value::Array(items)) => items
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template")?.as_str())
                .ok_or_else(|| fail("field `chat_template` is a list without a template named \"default\"".into()))?
                .to_string(),
            Some(other) => return Err(fail(format!("field `chat_template` is {other}; expected a string"))),
        };
        // A special token is a string or an object with its `content`.
        let token =
            |field: &str| -> Result<String, ChatError> {
                match json.get(field) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(v) => v.get("content").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                        fail(format!("field `{field}` is {v}; expected a string or {{\"content\": ...}}"))
                    }),
                }
            };
        let chat = ChatTemplate {
            path: path.to_path_buf(),
            template,
            bos_token: token("bos_token")?,
            eos_token: token("eos_token")?,
        };
        chat.render(&[Message::new("user", "check")], true)?; // a template that cannot render fails here, once
        Ok(chat)
    }

    /// The prompt text for `messages`, ending with the assistant's turn
    /// opened when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        let fail = |e: JinjaError| ChatError::Template { path: self.path.clone(), message: format!("{e:#}") };
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                format!("the template refused the conversation: {message}"),
            ))
        });
        env.add_template("chat", &self.template).map_err(fail)?;
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.get_template("chat").and_then(|t| t.render(ctx)).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template in the style of Llama 2 chat's, written for these tests.
    const TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}\
{% set rest = messages[1:] %}{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}\
{% for m in rest %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] {% if loop.first and sys %}<<SYS>> {{ sys.strip() }} <</SYS>> {% endif %}\
{{ m['content'].strip() }} [/INST]{% elif m['role'] == 'assistant' %} {{ m['content'].strip() }} {{ eos_token }}\
{% else %}{{ raise_exception('roles are user and assistant after an optional system message') }}{% endif %}{% endfor %}";

    fn config(template: &str) -> String {
        serde_json::json!({"chat_template": template, "bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}})
            .to_string()
    }

    #[test]
    fn renders_system_user_and_assistant_turns_as_the_template_says() {
        let chat = ChatTemplate::from_config(&config(TEMPLATE), Path::new("tokenizer_config.json")).unwrap();
        let one = chat.render(&[Message::new("user", "  Hi there ")], true).unwrap();
        assert_eq!(one, "<s>[INST] Hi there [/INST]");
        let turns = [
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
            Message::new("assistant", "Hello!"),
            Message::new("user", "Bye"),
        ];
        assert_eq!(
            chat.render(&turns, true).unwrap(),
            "<s>[INST] <<SYS>> Be brief. <</SYS>> Hi [/INST] Hello! </s><s>[INST] Bye [/INST]"
        );
    }

    #[test]
    fn generation_prompts_and_named_templates() {
        let t = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        let named = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": t}]});
        let chat = ChatTemplate::from_config(&named.to_string(), Path::new("c.json")).unwrap();
        assert_eq!(chat.render(&[Message::new("user", "a")], true).unwrap(), "<|user|>a<|assistant|>");
        assert_eq!(chat.render(&[Message::new("user", "a")], false).unwrap(), "<|user|>a");
    }

    #[test]
    fn missing_broken_and_refusing_templates_are_errors_naming_the_file() {
        let e =
            ChatTemplate::from_config(r#"{"bos_token": "<s>"}"#, Path::new("dir/tokenizer_config.json")).unwrap_err();
        assert!(
            matches!(e, ChatError::NoTemplate { .. }) && e.to_string().contains("dir/tokenizer_config.json"),
            "{e}"
        );
        let e = ChatTemplate::from_config(&config("{% for %}"), Path::new("t.json")).unwrap_err().to_string();
        assert!(e.contains("t.json") && e.contains("chat_template"), "{e}");
        let chat = ChatTemplate::from_config(&config(TEMPLATE), Path::new("t.json")).unwrap();
        let e = chat.render(&[Message::new("tool", "x")], true).unwrap_err().to_string();
        assert!(e.contains("refused the conversation") && e.contains("roles are user and assistant"), "{e}");
        let e = ChatTemplate::from_config(r#"{"chat_template": 3}"#, Path::new("t.json")).unwrap_err().to_string();
        assert!(e.contains("`chat_template` is 3"), "{e}");
    }
}
