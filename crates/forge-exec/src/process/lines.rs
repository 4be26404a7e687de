//! Splitting a child's output into lines, with over-long lines cut.

use forge_events::OutputStream;

/// Splits a byte stream into lines without holding more than `max` bytes of a line.
pub(super) struct LineSplitter {
    pub(super) stream: OutputStream,
    max: usize,
    partial: Vec<u8>,
    /// Dropping the rest of an over-long line until its newline.
    skipping: bool,
}

impl LineSplitter {
    pub(super) fn new(stream: OutputStream, max: usize) -> Self {
        Self {
            stream,
            max: max.max(16),
            partial: Vec::new(),
            skipping: false,
        }
    }

    pub(super) fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(OutputStream, &str)) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (chunk, rest, ends) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            if !self.skipping {
                let room = self.max - self.partial.len();
                if chunk.len() > room {
                    self.partial.extend_from_slice(&chunk[..room]);
                    let mut line = String::from_utf8_lossy(&self.partial).into_owned();
                    line.push_str(" …[line cut]");
                    emit(self.stream, &line);
                    self.partial.clear();
                    self.skipping = !ends;
                } else if ends && self.partial.is_empty() {
                    // A whole line within this chunk: no copy.
                    let line = String::from_utf8_lossy(chunk);
                    emit(self.stream, line.trim_end_matches('\r'));
                } else {
                    self.partial.extend_from_slice(chunk);
                    if ends {
                        let line = String::from_utf8_lossy(&self.partial);
                        emit(self.stream, line.trim_end_matches('\r'));
                        self.partial.clear();
                    }
                }
            } else if ends {
                self.skipping = false;
            }
            bytes = rest;
        }
    }

    pub(super) fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::new(OutputStream::Stdout, max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |_, l| out.push(l.to_owned()));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn lines_across_chunks_and_cut_lines() {
        assert_eq!(
            split(100, &[b"ab", b"c\nd", b"e\r\n", b"tail"]),
            ["abc", "de", "tail"]
        );
        let long = vec![b'x'; 40];
        let got = split(16, &[&long, b"\nnext\n"]);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(&"x".repeat(16)) && got[0].ends_with("[line cut]"));
        assert_eq!(got[1], "next");
        assert_eq!(split(100, &[b"\xff\xfe ok\n"]), ["\u{fffd}\u{fffd} ok"]);
        // Whole lines within one chunk, and a line of exactly the limit, are not cut.
        assert_eq!(
            split(16, &[b"one\ntwo\r\n", b"sixteen-bytes-xx\nx"]),
            ["one", "two", "sixteen-bytes-xx", "x"]
        );
    }
}
