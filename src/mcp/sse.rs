//! A `text/event-stream` body split into events the way the WHATWG HTML standard's
//! event-stream interpretation reads it ("Server-sent events", "Interpreting an event
//! stream"), keeping every byte where it was: a caller passes events through byte for byte
//! and rewrites only the ones it must.
//!
//! - One U+FEFF byte order mark at the start of the stream is not part of the first line.
//! - Lines end in CRLF, LF or CR.
//! - A blank line ends (dispatches) an event; a line starting with `:` is a comment; any
//!   other line is a field: the name before the first `:`, the value after it with one
//!   leading space removed (no `:`: the whole line is the name, the value is empty).
//! - `data` lines join with `\n` into the event's data; an event with no `data` line is not
//!   dispatched. Bytes after the last blank line are an event the stream never ended:
//!   a browser never dispatches it.
//!
//! Splitting never fails and never copies: events borrow from the body, and only
//! [`Event::data`] allocates (at most the event's own size).

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One line: its content and the line end that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line without its end.
    pub content: &'a [u8],
    /// `\r\n`, `\n` or `\r`; empty only for a last line the body does not end.
    pub end: &'a [u8],
}

impl<'a> Line<'a> {
    /// `Some((name, value))` for a field line; `None` for a comment or a blank line.
    pub fn field(&self) -> Option<(&'a [u8], &'a [u8])> {
        let c = self.content;
        if c.is_empty() || c.first() == Some(&b':') {
            return None;
        }
        Some(match c.iter().position(|b| *b == b':') {
            None => (c, &[][..]),
            Some(i) => {
                let (name, rest) = c.split_at(i);
                let value = rest.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
        })
    }

    /// A comment (`:` first), or a line of spaces and tabs only (a field with a blank
    /// name: ignored).
    fn is_inert(&self) -> bool {
        self.content.first() == Some(&b':')
            || self.content.iter().all(|b| matches!(b, b' ' | b'\t'))
    }
}

/// The lines of `bytes`, each with its end.
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let (content, after) = match self.rest.iter().position(|b| matches!(b, b'\r' | b'\n')) {
            None => (self.rest, &[][..]),
            Some(i) => self.rest.split_at(i),
        };
        let end_len = match after {
            [b'\r', b'\n', ..] => 2,
            [] => 0,
            _ => 1,
        };
        let (end, rest) = after.split_at(end_len.min(after.len()));
        self.rest = rest;
        Some(Line { content, end })
    }
}

/// One event: its lines up to and including the blank line that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event's bytes, blank line included: passing it through is writing `raw`.
    pub raw: &'a [u8],
    /// `false`: the stream ended before the blank line (never dispatched by a browser).
    pub terminated: bool,
}

impl<'a> Event<'a> {
    /// Every line of the event, the ending blank line included.
    pub fn lines(&self) -> Lines<'a> {
        Lines { rest: self.raw }
    }

    /// The fields, in order: `(name, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.lines().filter_map(|l| l.field())
    }

    /// The data buffer: the `data` values joined with `\n`; `None` without a `data` line.
    pub fn data(&self) -> Option<Vec<u8>> {
        let mut data: Option<Vec<u8>> = None;
        for (name, value) in self.fields() {
            if name == b"data" {
                let d = data.get_or_insert_with(Vec::new);
                d.extend_from_slice(value);
                d.push(b'\n');
            }
        }
        data.map(|mut d| {
            d.pop();
            d
        })
    }

    /// Only comments and blank-named fields: nothing a reader could take as an event.
    pub fn is_inert(&self) -> bool {
        self.lines().all(|l| l.is_inert())
    }
}

/// A body split into events.
#[derive(Debug, Clone)]
pub struct Stream<'a> {
    /// The byte order mark the body starts with, or nothing.
    pub bom: &'a [u8],
    rest: &'a [u8],
}

/// Splits `body` (a whole `text/event-stream` body) into its events.
pub fn parse(body: &[u8]) -> Stream<'_> {
    let (bom, rest) = match body.strip_prefix(BOM) {
        Some(rest) => (BOM, rest),
        None => (&[][..], body),
    };
    Stream { bom, rest }
}

impl<'a> Iterator for Stream<'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let mut len = 0usize;
        for line in (Lines { rest: self.rest }) {
            len = len
                .saturating_add(line.content.len())
                .saturating_add(line.end.len());
            if line.content.is_empty() {
                let (raw, rest) = self.rest.split_at(len.min(self.rest.len()));
                self.rest = rest;
                return Some(Event {
                    raw,
                    terminated: true,
                });
            }
        }
        let raw = std::mem::take(&mut self.rest);
        Some(Event {
            raw,
            terminated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(body: &[u8]) -> Vec<(Vec<u8>, bool, Option<String>)> {
        parse(body)
            .map(|e| {
                let data = e.data().map(|d| String::from_utf8(d).unwrap());
                (e.raw.to_vec(), e.terminated, data)
            })
            .collect()
    }

    #[test]
    fn lines_end_in_crlf_lf_or_cr() {
        let lines: Vec<_> = (Lines {
            rest: b"a\r\nb\nc\rd\r\r\ne",
        })
        .map(|l| (l.content, l.end))
        .collect();
        assert_eq!(
            lines,
            vec![
                (&b"a"[..], &b"\r\n"[..]),
                (b"b", b"\n"),
                (b"c", b"\r"),
                (b"d", b"\r"),
                (b"", b"\r\n"),
                (b"e", b""),
            ]
        );
    }

    #[test]
    fn fields_drop_one_leading_space_only() {
        let f = |c: &'static [u8]| {
            Line {
                content: c,
                end: b"\n",
            }
            .field()
        };
        assert_eq!(f(b"data: x"), Some((&b"data"[..], &b"x"[..])));
        assert_eq!(f(b"data:x"), Some((&b"data"[..], &b"x"[..])));
        assert_eq!(f(b"data:  x"), Some((&b"data"[..], &b" x"[..])));
        assert_eq!(f(b"data"), Some((&b"data"[..], &b""[..])));
        assert_eq!(f(b"data:"), Some((&b"data"[..], &b""[..])));
        assert_eq!(f(b"data: a:b"), Some((&b"data"[..], &b"a:b"[..])));
        assert_eq!(f(b"Data: x"), Some((&b"Data"[..], &b"x"[..])));
        assert_eq!(f(b": comment"), None);
        assert_eq!(f(b":"), None);
        assert_eq!(f(b""), None);
    }

    #[test]
    fn events_end_at_blank_lines_whatever_the_line_ends() {
        for body in [
            &b"data: a\n\ndata: b\n\n"[..],
            b"data: a\r\n\r\ndata: b\r\n\r\n",
            b"data: a\r\rdata: b\r\r",
            b"data: a\r\n\ndata: b\r\r\n",
        ] {
            let ev = events(body);
            assert_eq!(ev.len(), 2, "{body:?}");
            assert_eq!(ev[0].2.as_deref(), Some("a"));
            assert_eq!(ev[1].2.as_deref(), Some("b"));
            assert!(ev.iter().all(|e| e.1));
            let joined: Vec<u8> = ev.iter().flat_map(|e| e.0.clone()).collect();
            assert_eq!(joined, body, "the events cover the body exactly");
        }
    }

    #[test]
    fn data_lines_join_with_lf_and_other_fields_do_not_count() {
        let ev = events(b"event: message\nid: 7\ndata: {\"a\"\n: note\ndata:  :1}\nretry: 10\n\n");
        assert_eq!(ev[0].2.as_deref(), Some("{\"a\"\n :1}"));
        assert_eq!(events(b"data\n\n")[0].2.as_deref(), Some(""));
        assert_eq!(events(b"data:\ndata:\n\n")[0].2.as_deref(), Some("\n"));
        assert_eq!(events(b"id: 1\n\n")[0].2, None);
        assert_eq!(
            events(b"Data: x\n\n")[0].2,
            None,
            "field names are case-sensitive"
        );
    }

    #[test]
    fn a_leading_bom_is_skipped_once() {
        let s = parse(b"\xEF\xBB\xBFdata: a\n\n");
        assert_eq!(s.bom, BOM);
        let ev: Vec<_> = s.collect();
        assert_eq!(ev[0].data().as_deref(), Some(&b"a"[..]));
        let ev: Vec<_> = parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n").collect();
        assert_eq!(ev[0].data(), None, "a second BOM is part of the field name");
    }

    #[test]
    fn an_unfinished_last_event_is_marked() {
        let ev = events(b"data: a\n\ndata: b\n");
        assert_eq!((ev[1].1, ev[1].2.as_deref()), (false, Some("b")));
        let ev = events(b"data: a\n\ndata: b");
        assert!(!ev[1].1);
        let ev: Vec<_> = parse(b"data: a\n\n: keep-alive\n   \n").collect();
        assert!(!ev[1].terminated);
        assert!(ev[1].is_inert());
        assert!(!parse(b"id: 3").next().unwrap().is_inert());
        assert!(events(b"").is_empty());
    }

    #[test]
    fn blank_lines_alone_are_empty_events() {
        let ev = events(b"\n\r\n\r");
        assert_eq!(ev.len(), 3);
        assert!(ev.iter().all(|e| e.1 && e.2.is_none()));
    }
}
