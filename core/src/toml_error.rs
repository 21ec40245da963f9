//! TOML errors in one line: where, what, and the offending text cut to a
//! window around the column.
//!
//! The `toml` crate's own rendering prints the whole offending line (a
//! hostile plan made it print 350 kB) over several lines, and reports its
//! nesting limit as a bare "recursion limit" with no location. Every reader of
//! a TOML file here (plans, GPU profiles) renders its errors with [`describe`].

/// Characters of the offending line shown on each side of the column.
const WINDOW: usize = 40;

/// How deep the `toml` crate lets keys, arrays and tables nest.
const TOML_NESTING_LIMIT: usize = 80;

/// `e`, an error from parsing `text`, as one line: `line 3, column 9: <what> (at `<text>`)`.
pub fn describe(e: &toml::de::Error, text: &str) -> String {
    let message = one_line(e.message());
    match e.span() {
        Some(span) => {
            let (line, column, content) = locate(text, span.start);
            format!("line {line}, column {column}: {message} (at `{}`)", window(content, column - 1))
        }
        None if message == "recursion limit" => match deep_key(text) {
            Some((line, parts)) => format!(
                "line {line}: a dotted key of {parts} parts nests deeper than the TOML reader allows \
                 ({TOML_NESTING_LIMIT} levels)"
            ),
            None => {
                format!("keys, arrays or tables nest deeper than the TOML reader allows ({TOML_NESTING_LIMIT} levels)")
            }
        },
        // Schema errors without a span: the crate's rendering names the key (`in `gpu.cpu``).
        None => one_line(&e.to_string()),
    }
}

/// Lines joined with "; ", blank ones dropped.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// The 1-based line and column (in characters) of byte `at` in `text`, and that line.
fn locate(text: &str, at: usize) -> (usize, usize, &str) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[start..at].chars().count() + 1;
    (line, column, text[start..end].trim_end_matches('\r'))
}

/// At most [`WINDOW`] characters of `line` either side of character `column`,
/// with `…` where cut and control characters escaped.
fn window(line: &str, column: usize) -> String {
    let chars: Vec<char> = line.chars().collect();
    let from = column.saturating_sub(WINDOW).min(chars.len());
    let to = (column + WINDOW).min(chars.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    for &c in &chars[from..to] {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if to < chars.len() {
        out.push('…');
    }
    out
}

/// The first line holding a key with at least [`TOML_NESTING_LIMIT`] dotted
/// parts (what the crate's bare "recursion limit" is about), and its part count.
fn deep_key(text: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let l = l.trim_start();
        let key = match l.strip_prefix('[') {
            Some(header) => header.split(']').next()?,
            None => l.split('=').next()?,
        };
        let parts = key.matches('.').count() + 1;
        (parts >= TOML_NESTING_LIMIT).then_some((i + 1, parts))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        describe(&e, text)
    }

    #[test]
    fn a_350_kb_offending_line_is_cut_to_a_window_around_the_column() {
        let text = format!("a = 1\nb = [{}, x]\n", "1, ".repeat(120_000));
        let msg = err(&text);
        assert!(msg.len() < 300, "{} bytes: {msg}", msg.len());
        assert!(msg.starts_with("line 2, column 360006: "), "{msg}");
        assert!(msg.contains("extra comma in array") && msg.ends_with(" 1, 1, , x]`)"), "{msg}");
        assert!(msg.contains("(at `… 1, 1,"), "cut before the column: {msg}");
        assert_eq!(msg.lines().count(), 1);
    }

    #[test]
    fn a_short_line_is_shown_whole() {
        assert_eq!(err("a = 1\nb = = 2\n"), "line 2, column 5: extra `=`, expected nothing (at `b = = 2`)");
    }

    #[test]
    fn the_recursion_limit_names_the_line_and_the_limit() {
        let key = vec!["k"; 100].join(".");
        let msg = err(&format!("a = 1\n{key} = 2\n"));
        assert_eq!(msg, "line 2: a dotted key of 100 parts nests deeper than the TOML reader allows (80 levels)");
        let msg = err(&format!("x = {}{}", "[".repeat(200), "]".repeat(200)));
        assert!(msg.starts_with("line 1, column 85: cannot recurse further; max recursion depth met"), "{msg}");
        assert!(msg.contains("(at `…[[[[") && msg.len() < 300, "{msg}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let msg = err("a = \"\u{0}\"\n");
        assert!(msg.contains("\\0") && !msg.contains('\u{0}'), "{msg}");
    }
}
