use std::fmt;

use bytes::{Bytes, BytesMut};

/// Events larger than this are passed on as opaque blocks instead of growing the
/// buffer without bound.
const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// One block of an event stream, up to and including the blank line that ends it.
///
/// A block may hold only comments or blank lines; then [`data`](Event::data) is `None`
/// and a consumer that forwards bytes still forwards [`raw`](Event::raw).
#[derive(Clone)]
pub struct Event {
    event: Field,
    data: Field,
    id: Option<String>,
    retry: Option<u64>,
    oversized: bool,
    raw: Bytes,
}

/// A field's value: most events have one `data:` line and one `event:` line, kept as
/// spans of the block's bytes so that decoding an event allocates nothing; several
/// `data:` lines (joined) or invalid UTF-8 (replaced) need a `String`.
#[derive(Clone, Default)]
enum Field {
    #[default]
    Absent,
    /// `raw[start..end]`, valid UTF-8.
    Span(usize, usize),
    Owned(String),
}

impl Field {
    fn get<'a>(&'a self, raw: &'a [u8]) -> Option<&'a str> {
        match self {
            Field::Absent => None,
            // Checked when the line was read; checking again costs what a copy would
            // have, without the allocation (and without `unsafe`).
            Field::Span(start, end) => std::str::from_utf8(raw.get(*start..*end)?).ok(),
            Field::Owned(s) => Some(s),
        }
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.event() == other.event()
            && self.data() == other.data()
            && self.id == other.id
            && self.retry == other.retry
            && self.oversized == other.oversized
            && self.raw == other.raw
    }
}

impl Eq for Event {}

impl Event {
    /// The `event:` field, if any.
    pub fn event(&self) -> Option<&str> {
        self.event.get(&self.raw)
    }

    /// The `data:` lines joined by `\n`, or `None` when the block had no `data:` line.
    pub fn data(&self) -> Option<&str> {
        self.data.get(&self.raw)
    }

    /// The `id:` field, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The `retry:` field, if it was a number.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The exact bytes of this block as they arrived, including its blank line.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// True when the block was larger than the decoder's cap and was not parsed.
    pub fn is_oversized(&self) -> bool {
        self.oversized
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("event", &self.event())
            .field("data", &self.data())
            .field("id", &self.id)
            .field("retry", &self.retry)
            .field("oversized", &self.oversized)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

/// An incremental SSE decoder. See the [module docs](crate::sse).
///
/// Bytes go in with [`push`](Decoder::push); complete events come out of
/// [`next_event`](Decoder::next_event). State survives across pushes, so every byte is
/// scanned once however the stream is split.
pub struct Decoder {
    buf: BytesMut,
    /// Offset in `buf` of the first line not yet parsed.
    line_start: usize,
    /// Fields of the block being read.
    current: Fields,
    max_event_size: usize,
    /// The stream's first line may start with a byte-order mark, which is skipped.
    at_stream_start: bool,
}

#[derive(Default)]
struct Fields {
    event: Field,
    data: Field,
    id: Option<String>,
    retry: Option<u64>,
}

impl Decoder {
    /// A decoder with the default cap on one event (16 MiB).
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A decoder that passes on blocks larger than `max` bytes unparsed.
    pub fn with_max_event_size(max: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            line_start: 0,
            current: Fields::default(),
            max_event_size: max.max(1),
            at_stream_start: true,
        }
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned in an event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event, or `None` until more bytes arrive.
    pub fn next_event(&mut self) -> Option<Event> {
        self.next_inner(false)
    }

    /// At the end of the stream: the last block even without its blank line, so a
    /// stream cut short loses nothing. Call it until it returns `None`.
    pub fn finish(&mut self) -> Option<Event> {
        self.next_inner(true)
    }

    fn next_inner(&mut self, eof: bool) -> Option<Event> {
        loop {
            let rest = &self.buf[self.line_start..];
            let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.buf.len() > self.max_event_size {
                    return Some(self.take_oversized());
                }
                if eof && !self.buf.is_empty() {
                    let end = self.buf.len();
                    self.parse_line(self.line_start, end);
                    return Some(self.dispatch(end));
                }
                return None;
            };
            let term_len = if rest[i] == b'\r' {
                match rest.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A `\r` at the end may be the first half of `\r\n`: wait for more.
                    None if !eof => return None,
                    None => 1,
                }
            } else {
                1
            };
            let line_end = self.line_start + i;
            let next = line_end + term_len;
            if i == 0 {
                // A blank line ends the block.
                return Some(self.dispatch(next));
            }
            self.parse_line(self.line_start, line_end);
            self.line_start = next;
            if self.line_start > self.max_event_size {
                return Some(self.take_oversized());
            }
        }
    }

    fn parse_line(&mut self, start: usize, end: usize) {
        let mut line = &self.buf[start..end];
        if self.at_stream_start {
            self.at_stream_start = false;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.first() == Some(&b':') {
            return; // a comment
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        // Where `value` sits in the block (the buffer starts with the block).
        let value_end = end;
        let value_start = end - value.len();
        let text = || String::from_utf8_lossy(value).into_owned();
        let field = || match std::str::from_utf8(value) {
            Ok(_) => Field::Span(value_start, value_end),
            Err(_) => Field::Owned(text()),
        };
        match name {
            b"data" => {
                self.current.data = match std::mem::take(&mut self.current.data) {
                    Field::Absent => field(),
                    earlier => {
                        let mut data = earlier.get(&self.buf).unwrap_or_default().to_owned();
                        data.push('\n');
                        data.push_str(&String::from_utf8_lossy(value));
                        Field::Owned(data)
                    }
                }
            }
            b"event" => self.current.event = field(),
            b"id" if !value.contains(&0) => self.current.id = Some(text()),
            b"retry" => {
                self.current.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
            }
            _ => {} // unknown fields are ignored, as the spec says
        }
    }

    fn dispatch(&mut self, end: usize) -> Event {
        self.at_stream_start = false;
        let fields = std::mem::take(&mut self.current);
        self.line_start = 0;
        Event {
            event: fields.event,
            data: fields.data,
            id: fields.id,
            retry: fields.retry,
            oversized: false,
            raw: self.buf.split_to(end).freeze(),
        }
    }

    fn take_oversized(&mut self) -> Event {
        self.current = Fields::default();
        self.line_start = 0;
        let end = self.buf.len();
        Event {
            event: Field::Absent,
            data: Field::Absent,
            id: None,
            retry: None,
            oversized: true,
            raw: self.buf.split_to(end).freeze(),
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("pending", &self.buf.len())
            .field("max_event_size", &self.max_event_size)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            d.push(chunk);
            while let Some(e) = d.next_event() {
                out.push(e);
            }
        }
        while let Some(e) = d.finish() {
            out.push(e);
        }
        out
    }

    #[test]
    fn split_at_every_byte_gives_the_same_events() {
        let stream =
            b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\n: comment\n\ndata:x\rid: 7\rretry: 30\r\r";
        let whole = decode_all(&[stream]);
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(&bytewise), whole);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].event(), Some("a"));
        assert_eq!(whole[0].data(), Some("1\n2"));
        assert_eq!(whole[1].data(), None, "comment-only block");
        assert_eq!(whole[2].data(), Some("x"));
        assert_eq!(whole[2].id(), Some("7"));
        assert_eq!(whole[2].retry(), Some(30));
        let raw: Vec<u8> = whole.iter().flat_map(|e| e.raw().to_vec()).collect();
        assert_eq!(raw, stream, "raw bytes round-trip exactly");
    }

    #[test]
    fn crlf_split_between_cr_and_lf() {
        let events = decode_all(&[b"data: a\r", b"\n\r", b"\ndata: b\n\n"]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data(), Some("a"));
        assert_eq!(events[0].raw().as_ref(), b"data: a\r\n\r\n");
        assert_eq!(events[1].data(), Some("b"));
    }

    #[test]
    fn garbage_never_panics() {
        let garbage: &[&[u8]] = &[
            b"\xff\xfe\x00garbage",
            b"no colon line\n",
            b"::::\n\n",
            b"data:",
            b"\xc3",
        ];
        let events = decode_all(garbage);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data(), Some("\u{fffd}"));
    }

    #[test]
    fn trailing_event_without_blank_line_is_flushed_on_finish() {
        let events = decode_all(&[b"data: [DONE]"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data(), Some("[DONE]"));
    }

    #[test]
    fn bom_is_skipped_once() {
        let events = decode_all(&["\u{feff}data: x\n\n".as_bytes()]);
        assert_eq!(events[0].data(), Some("x"));
    }

    #[test]
    fn oversized_block_is_passed_on_raw() {
        let mut d = Decoder::with_max_event_size(16);
        d.push(b"data: 0123456789abcdefghij");
        let e = d.next_event().expect("oversized block");
        assert!(e.is_oversized());
        assert_eq!(e.raw().len(), 26);
        d.push(b"\n\ndata: ok\n\n");
        // The rest of the oversized line ends in blank blocks, then parsing resumes.
        let next_data = std::iter::from_fn(|| d.next_event()).find(|e| e.data().is_some());
        assert_eq!(next_data.unwrap().data(), Some("ok"));
    }

    #[test]
    fn encoder_roundtrip() {
        let bytes = super::super::encode(Some("message_start"), "line1\nline2");
        let events = decode_all(&[&bytes]);
        assert_eq!(events[0].event(), Some("message_start"));
        assert_eq!(events[0].data(), Some("line1\nline2"));
    }
}
