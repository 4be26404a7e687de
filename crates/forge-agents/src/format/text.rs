//! Plain text (aider, `shell`): every line is progress, standard output is the result; aider's
//! `Applied edit to <path>` lines are edits and its `Tokens: … Cost: $…` lines usage.

use super::Format;
use crate::parse::{Core, cap, progress, strip_ansi};
use crate::{AgentEvent, Stream};

/// How much standard output a text agent's result keeps (its tail).
const MAX_TEXT_RESULT: usize = 64 * 1024;

/// A text agent's output.
#[derive(Debug, Default)]
pub(super) struct Text {
    /// Standard output (its tail).
    stdout: String,
}

impl Format for Text {
    fn event(&mut self, _: &mut Core, _: &str, _: &serde_json::Value, _: &mut Vec<AgentEvent>) {}

    fn line(&mut self, core: &mut Core, stream: Stream, line: &str, out: &mut Vec<AgentEvent>) {
        let clean = strip_ansi(line);
        if stream == Stream::Stdout {
            self.stdout.push_str(&clean);
            self.stdout.push('\n');
            if self.stdout.len() > 2 * MAX_TEXT_RESULT {
                let mut cut = self.stdout.len() - MAX_TEXT_RESULT;
                while !self.stdout.is_char_boundary(cut) {
                    cut += 1;
                }
                self.stdout.drain(..cut);
            }
        }
        let trimmed = clean.trim();
        if trimmed.is_empty() {
            return;
        }
        // aider reports its edits and usage in plain text.
        if let Some(path) = trimmed.strip_prefix("Applied edit to ") {
            let path = core.rel(path.trim());
            progress(
                format!("Edit {path}"),
                Some("edit".to_owned()),
                vec![path],
                out,
            );
            return;
        }
        if let Some((tokens_in, tokens_out, cost_usd)) = aider_usage(trimmed) {
            core.add_usage(tokens_in, tokens_out, cost_usd, out);
        }
        progress(cap(trimmed), None, Vec::new(), out);
    }

    fn result<'a>(&'a self, core: &'a Core) -> Option<&'a str> {
        match &core.result {
            Some((text, _)) => Some(text),
            None => Some(self.stdout.trim()).filter(|t| !t.is_empty()),
        }
    }

    fn finish(&mut self, core: &mut Core, out: &mut Vec<AgentEvent>) {
        if core.result.is_none()
            && let Some(text) = self.result(core).map(str::to_owned)
        {
            core.set_result(text, false, out);
        }
    }
}

/// aider's usage line: `Tokens: 2.3k sent, 1.1k cache write, 5.0k cache hit, 301 received.
/// Cost: $0.01 message, $0.02 session.` (cost per message; counts are rounded by aider).
pub(crate) fn aider_usage(line: &str) -> Option<(u64, u64, Option<f64>)> {
    let rest = line.strip_prefix("Tokens: ")?;
    let (tokens, cost_part) = match rest.split_once(" Cost: ") {
        Some((t, c)) => (t, Some(c)),
        None => (rest, None),
    };
    let (mut tokens_in, mut tokens_out, mut any) = (0, 0, false);
    for item in tokens.trim_end_matches('.').split(", ") {
        let (number, label) = item.trim().split_once(' ')?;
        let n = aider_count(number)?;
        match label.trim_end_matches('.') {
            "sent" | "cache write" | "cache hit" => tokens_in += n,
            "received" => tokens_out += n,
            _ => continue,
        }
        any = true;
    }
    let cost_usd = cost_part.and_then(|c| {
        let first = c.split(',').next()?.trim();
        let amount = first.strip_prefix('$')?.split_whitespace().next()?;
        amount
            .parse::<f64>()
            .ok()
            .filter(|c| c.is_finite() && *c >= 0.0)
    });
    any.then_some((tokens_in, tokens_out, cost_usd))
}

/// `512`, `2.3k`, `1.2M` as a count.
fn aider_count(text: &str) -> Option<u64> {
    let (digits, scale) = match text.chars().last()? {
        'k' | 'K' => (&text[..text.len() - 1], 1e3),
        'm' | 'M' => (&text[..text.len() - 1], 1e6),
        _ => (text, 1.0),
    };
    let value = digits.parse::<f64>().ok()? * scale;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (value.is_finite() && value >= 0.0).then(|| value.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OutputFormat, OutputParser, Stream};

    #[test]
    fn aider_lines() {
        assert_eq!(
            aider_usage(
                "Tokens: 2.3k sent, 1.1k cache write, 5.0k cache hit, 301 received. Cost: $0.01 message, $0.02 session."
            ),
            Some((8400, 301, Some(0.01)))
        );
        assert_eq!(
            aider_usage("Tokens: 512 sent, 12 received."),
            Some((512, 12, None))
        );
        assert_eq!(aider_usage("Tokens: lots"), None);
        assert_eq!(aider_usage("hello"), None);
    }

    #[test]
    fn long_text_output_keeps_its_tail() {
        let mut p = OutputParser::new(OutputFormat::Text);
        let mut out = Vec::new();
        let line = "é".repeat(1000);
        for _ in 0..200 {
            p.line(Stream::Stdout, &line, &mut out);
        }
        p.line(Stream::Stdout, "last", &mut out);
        let r = p.result().unwrap();
        assert!(r.len() <= 2 * MAX_TEXT_RESULT && r.ends_with("last"));
        let AgentEvent::Progress { message, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(message.chars().count(), 1000);
    }

    #[test]
    fn text_agents_result_is_stdout() {
        let mut p = OutputParser::new(OutputFormat::Text);
        let mut out = Vec::new();
        p.line(Stream::Stdout, "one", &mut out);
        p.line(Stream::Stderr, "warn", &mut out);
        p.line(Stream::Stdout, "", &mut out);
        p.line(Stream::Stdout, "two", &mut out);
        p.finish(&mut out);
        p.finish(&mut out);
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(
            out[3],
            AgentEvent::Result {
                text: "one\n\ntwo".into(),
                is_error: false
            }
        );
    }
}
