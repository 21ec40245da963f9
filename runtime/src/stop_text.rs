//! Stop strings over streamed text (`djinn-exec --stop`): which part of the
//! text generated so far may be printed now, and whether a stop string has
//! appeared. A stop string may arrive split over several tokens, so text that
//! could be the start of one is held back until the next piece says; the
//! text printed ends just before the earliest stop string, which is never
//! printed.

/// The generated text, as much of it printed as is known to precede any stop string.
#[derive(Debug, Clone, PartialEq)]
pub struct StopText<'a> {
    stops: &'a [String],
    /// The text so far; once stopped, up to (not including) the stop string.
    pub text: String,
    printed: usize,
    stopped: bool,
}

impl<'a> StopText<'a> {
    pub fn new(stops: &'a [String]) -> StopText<'a> {
        StopText { stops, text: String::new(), printed: 0, stopped: false }
    }

    /// Appends `piece`; returns what may be printed now and whether a stop
    /// string has appeared (then the text ends before it and nothing more is taken).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.text.push_str(piece);
        let stops = self.stops.iter().filter(|s| !s.is_empty());
        if let Some(at) = stops.clone().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(at.max(self.printed));
            self.stopped = true;
            return (self.take(self.text.len()), true);
        }
        // The longest tail of the text that a stop string starts with stays back.
        let hold = stops
            .flat_map(|s| (1..s.len()).rev().filter(|&k| s.is_char_boundary(k)).find(|&k| self.text.ends_with(&s[..k])))
            .max()
            .unwrap_or(0);
        let end = (self.text.len() - hold).max(self.printed);
        (self.take(end), false)
    }

    /// What is still held back, once generation has ended without a stop string.
    pub fn flush(&mut self) -> String {
        self.take(self.text.len())
    }

    fn take(&mut self, end: usize) -> String {
        let out = self.text[self.printed..end].to_string();
        self.printed = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut t = StopText::new(&stops);
        let mut printed = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let (ready, s) = t.push(p);
            printed.push(ready);
            stopped = s;
            if s {
                break;
            }
        }
        if !stopped {
            printed.push(t.flush());
        }
        (printed, stopped, t.text)
    }

    #[test]
    fn without_stop_strings_every_piece_prints_at_once() {
        let (printed, stopped, text) = run(&[], &["Once", " upon", " a time"]);
        assert_eq!(
            (printed, stopped, text.as_str()),
            (vec!["Once".into(), " upon".into(), " a time".into(), "".into()], false, "Once upon a time")
        );
    }

    #[test]
    fn a_stop_string_split_over_pieces_is_held_back_and_never_printed() {
        let (printed, stopped, text) = run(&["\nUser:"], &["Hi", " there\n", "Us", "er: more"]);
        assert!(stopped);
        assert_eq!(text, "Hi there");
        assert_eq!(printed, ["Hi", " there", "", ""]);
        assert_eq!(printed.concat(), "Hi there");
    }

    #[test]
    fn a_false_start_is_released_when_the_next_piece_rules_it_out() {
        let (printed, stopped, text) = run(&["END"], &["the E", "ND", "zone"]);
        assert!(stopped && text == "the " && printed.concat() == "the ");
        let (printed, stopped, text) = run(&["END"], &["the E", "asy", " way"]);
        assert!(!stopped);
        assert_eq!(printed, ["the ", "Easy", " way", ""]);
        assert_eq!(text, "the Easy way");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins_and_multibyte_text_is_cut_on_characters() {
        let (_, stopped, text) = run(&["b", "a"], &["xxaxb"]);
        assert!(stopped && text == "xx");
        let (printed, stopped, text) = run(&["é!"], &["café", "!", " ok"]);
        assert!(stopped && text == "caf" && printed.concat() == "caf");
        assert!(run(&[""], &["empty stops never match"]).2 == "empty stops never match");
    }
}
