//! The commands the documents give, as written: a broken quick start fails here.
//!
//! The README's quick start is `cargo run --release --bin NAME -- ARGS` lines.
//! Two things must hold for a newcomer on a fresh clone:
//!
//! * cargo finds `NAME` from the repository root: every crate is a default
//!   member, and every `--bin` / `--example` the documents name exists
//!   ([`every_binary_the_documents_name_is_reachable_from_the_root`]);
//! * `ARGS` work: [`the_readme_quick_start_runs`] reads the quick start out
//!   of README.md and passes each line's arguments to the binary's library
//!   entry point (all its `main` runs), with the files it writes redirected
//!   to a scratch directory rather than the repository root.
//!
//! `.ci/quickstart` runs the same lines verbatim, through cargo, in CI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::runtime_cpu::{reference, Scratch, MHA};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn manifest(rel: &str) -> toml::Table {
    read(rel).parse().unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    let items = v.and_then(toml::Value::as_array).map(Vec::as_slice).unwrap_or_default();
    items.iter().map(|s| s.as_str().expect("a string").to_string()).collect()
}

/// The documents a newcomer reads commands from.
fn documents() -> Vec<String> {
    let mut docs: Vec<String> =
        ["README.md", "BENCHMARKS.md", "bench/README.md", "profiles/README.md"].map(String::from).into();
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    docs
}

/// Every word following `flag` in a cargo command line of `text` (from
/// `cargo` to the end of its line, a closing backtick, or the `--` before
/// the binary's own arguments).
fn after<'a>(text: &'a str, flag: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    for line in text.lines() {
        for (at, _) in line.match_indices("cargo ") {
            let command = line[at..].split('`').next().unwrap_or_default();
            let words: Vec<&str> = command.split_whitespace().take_while(|w| *w != "--").collect();
            found.extend(words.windows(2).filter(|w| w[0] == flag).map(|w| w[1]));
        }
    }
    found
}

#[test]
fn every_binary_the_documents_name_is_reachable_from_the_root() {
    let ws = manifest("Cargo.toml");
    let ws = ws["workspace"].as_table().unwrap();
    let members = strings(ws.get("members"));
    let defaults: BTreeSet<String> = strings(ws.get("default-members")).into_iter().collect();
    let want: BTreeSet<String> = members.iter().cloned().chain([".".to_string()]).collect();
    assert_eq!(defaults, want, "default-members must be every member and the root package");

    let mut bins = BTreeSet::new();
    for m in &members {
        let toml = manifest(&format!("{m}/Cargo.toml"));
        for bin in toml.get("bin").and_then(toml::Value::as_array).into_iter().flatten() {
            bins.insert(bin["name"].as_str().unwrap().to_string());
        }
    }
    for doc in documents() {
        let text = read(&doc);
        for name in after(&text, "--bin") {
            assert!(bins.contains(name), "{doc}: `--bin {name}` names no binary of the workspace ({bins:?})");
        }
        for name in after(&text, "--example") {
            assert!(root().join(format!("examples/{name}.rs")).is_file(), "{doc}: `--example {name}`: no such example");
        }
        for name in after(&text, "-p") {
            assert!(
                members.iter().any(|m| manifest(&format!("{m}/Cargo.toml"))["package"]["name"].as_str() == Some(name)),
                "{doc}: `-p {name}` names no package of the workspace"
            );
        }
    }
}

/// The lines of the fenced code blocks in README.md's "Quick start" section.
fn quick_start() -> Vec<String> {
    let readme = read("README.md");
    let start = readme.find("\n## Quick start\n").expect("README.md has a Quick start section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let mut lines = Vec::new();
    let mut fenced = false;
    for line in section.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if fenced && !line.trim().is_empty() {
            lines.push(line.to_string());
        }
    }
    lines
}

/// `line` split as a POSIX shell splits words (quotes, no expansions).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    // The word being read (`None` between words), and the quote it is inside.
    let (mut word, mut quote): (Option<String>, Option<char>) = (None, None);
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in {line:?}");
    words.extend(word);
    words
}

/// `cargo run --release --bin NAME -- ARGS` → (NAME, ARGS).
fn cargo_run(line: &str) -> (String, Vec<String>) {
    let words = shell_words(line);
    let prefix = ["cargo", "run", "--release", "--bin"];
    assert!(
        words.len() > 5 && words[..4] == prefix && words[5] == "--",
        "not a `cargo run --release --bin NAME -- ...` line: {line}"
    );
    (words[4].clone(), words[6..].to_vec())
}

#[test]
fn the_readme_quick_start_runs() {
    let scratch = Scratch::new("readme_quick_start");
    // Files a command wrote, by the name the README gives them.
    let mut written: BTreeMap<String, PathBuf> = BTreeMap::new();
    let lines = quick_start();
    assert!(lines.iter().any(|l| l.contains("--bin djinn-exec")), "the quick start runs a plan: {lines:?}");
    for line in lines {
        let (bin, mut args) = cargo_run(&line);
        for i in 0..args.len() {
            if let Some(path) = written.get(&args[i]) {
                args[i] = path.display().to_string();
            } else if i > 0 && matches!(args[i - 1].as_str(), "-o" | "--output") {
                let path = scratch.0.join(&args[i]);
                written.insert(args[i].clone(), path.clone());
                args[i] = path.display().to_string();
            }
        }
        let argv = std::iter::once(bin.clone()).chain(args.iter().cloned());
        match bin.as_str() {
            "djinn-compile" => {
                let out = djinn_compiler::run(argv).unwrap_or_else(|e| panic!("{line}: {e}"));
                let path = out.written_to.unwrap_or_else(|| panic!("{line}: no -o, so the plan is not kept"));
                assert!(path.starts_with(&scratch.0) && path.is_file(), "{line}: {}", path.display());
            }
            "djinn-exec" => {
                let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
                let report = djinn_runtime::exec::run(argv, &mut stdout, &mut stderr)
                    .unwrap_or_else(|e| panic!("{line}: {e:#}\n{}", String::from_utf8_lossy(&stderr)));
                let text = String::from_utf8(stdout).unwrap();
                assert!(!text.trim().is_empty(), "{line}: no text on stdout");
                // The fixture's weights are random, so its text is gibberish; but it is
                // transformers' gibberish, token for token.
                let prompt = args.windows(2).find(|w| w[0] == "--prompt").map(|w| w[1].as_str());
                if let Some(r) = reference(MHA).iter().find(|r| Some(r.prompt.as_str()) == prompt) {
                    let n = report.tokens.len().min(r.greedy_ids.len());
                    assert_eq!(report.tokens[..n], r.greedy_ids[..n], "{line}: tokens");
                }
            }
            other => panic!("{line}: the quick start runs {other}, which this test does not know how to run"),
        }
    }
}
