//! A whole OpenAI chat-completion answer read in one pass over its bytes.
//!
//! The observer needs little from an answer: the usage, the characters of the choices'
//! `message.content` and the last finish reason. Reading it into derived serde structs
//! cost about 8,000 instructions for a 400-byte answer (field identifiers, `Option`
//! layers and a visitor per struct, about 8% of the gateway's work per request); this
//! scanner reads the same answer in about 3,300, the finish reason's `String` included,
//! and allocates nothing else. Where the instructions went instead:
//!
//! - String bytes are looked at eight at a time (SWAR on a `u64`: quote, backslash,
//!   control byte, and non-ASCII where UTF-8 must be checked).
//! - Keys of the structs read are compared with the names they may be before any scan:
//!   most keys are one of them, as is.
//! - Compact JSON has no whitespace, so one comparison tells a token from whitespace;
//!   indentation is measured eight bytes at a time.
//! - The small steps are `#[inline(always)]`: a call (and the cursor written back to
//!   memory around it) costs as much as a step.
//!
//! It accepts exactly what serde_json 1.0 accepted when it read the answer into those
//! structs (they are kept in the tests as the oracle of a differential test), so an
//! answer is read, or refused as malformed, as before:
//!
//! - The answer, `usage`, `*_tokens_details`, each choice and its `message` are structs:
//!   an object read by key or, as serde's derive allows too, an array read by field
//!   order (missing fields take their default, extra elements are refused). A field given
//!   twice is refused; unknown keys are skipped. `choices` itself must be an array.
//! - `null` is `None` where the field is optional. Token counts are `u64`s: serde_json
//!   reads `1.0`, `1e3` and `-0` as floats and `-1` as an `i64`, which `u64` refuses, as it
//!   refuses integers past `u64::MAX`.
//! - Strings that are read (keys of those structs, `finish_reason`, `content`) are
//!   unescaped as into a `String`: surrogates must pair, and the bytes must be UTF-8.
//!   Skipped strings are only checked for their escapes and control characters: serde_json
//!   checks neither the UTF-8 nor the surrogates of what it skips.
//! - Skipped values may nest without limit: serde_json's recursion limit (128) counts only
//!   the containers it deserializes, never the ones it skips, and those are at most four
//!   deep here.

use super::Usage;

/// What an answer says, read by [`read`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The usage, when the answer has a non-null `usage`.
    pub(crate) usage: Option<Usage>,
    /// Characters of every choice's `message.content`, unescaped.
    pub(crate) output_chars: u64,
    /// The last choice's non-null `finish_reason`.
    pub(crate) finish_reason: Option<String>,
}

/// Reads a whole OpenAI chat-completion answer, or `None` when serde_json would have
/// refused it (see the module docs).
pub(crate) fn read(body: &[u8]) -> Option<Answer> {
    let mut scan = Scan { b: body, i: 0 };
    let mut usage = None;
    let mut choices = Choices::default();
    // Field indices follow the order of the structs serde read: an array's order.
    scan.fields(
        &[b"usage", b"choices"],
        #[inline(always)]
        |s, field| {
            match field {
                0 => usage = s.optional(|s| s.usage())?,
                _ => s.choices(&mut choices)?,
            }
            Some(())
        },
    )?;
    scan.end()?;
    let finish_reason = match choices.finish_reason {
        Some(text) => Some(scan.owned(text)?),
        None => None,
    };
    Some(Answer {
        usage,
        output_chars: choices.output_chars,
        finish_reason,
    })
}

/// Whether `body` is one JSON value, as `serde_json::from_slice::<IgnoredAny>` judges it
/// (the same rules as for skipped values: no UTF-8 or surrogate checks, no depth limit).
#[cfg(any(feature = "upstream", test))]
pub(crate) fn is_json(body: &[u8]) -> bool {
    let mut scan = Scan { b: body, i: 0 };
    scan.skip_nested().is_some() && scan.end().is_some()
}

/// What the choices say together.
#[derive(Default)]
struct Choices {
    output_chars: u64,
    finish_reason: Option<Text>,
}

/// A string read from the body: where its raw text is, and what it holds.
#[derive(Clone, Copy)]
struct Text {
    /// Its raw bytes are `start..end` (the quotes left out).
    start: usize,
    end: usize,
    /// Whether it has escapes (its raw bytes are not its text).
    escaped: bool,
    /// Characters once unescaped.
    chars: u64,
}

/// What a byte is to a string being scanned.
const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const BACKSLASH: u8 = 2;
const CONTROL: u8 = 3;
const HIGH: u8 = 4;

/// The class of every byte: plain ASCII, the two that end a run of text, the control
/// characters a JSON string may not hold, and the bytes of non-ASCII UTF-8.
static CLASS: [u8; 256] = {
    let mut class = [PLAIN; 256];
    let mut b = 0;
    while b < 256 {
        class[b] = match b as u8 {
            b'"' => QUOTE,
            b'\\' => BACKSLASH,
            0..=0x1f => CONTROL,
            0x80..=0xff => HIGH,
            _ => PLAIN,
        };
        b += 1;
    }
    class
};

/// A cursor over the body. (The closures handed to [`Scan::fields`] are
/// `#[inline(always)]` too, for the reason the module docs give.)
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    /// What is left to read.
    #[inline(always)]
    fn rest_of(&self) -> &[u8] {
        self.b.get(self.i..).unwrap_or_default()
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let b = *self.b.get(self.i)?;
        self.i += 1;
        Some(b)
    }

    /// The next byte that is not JSON whitespace (only these four bytes, as serde_json),
    /// consumed.
    #[inline(always)]
    fn token(&mut self) -> Option<u8> {
        let b = self.next()?;
        // Compact JSON has no whitespace: one comparison tells.
        if b > b' ' {
            return Some(b);
        }
        // Pretty JSON has one space after each colon.
        if b == b' ' {
            if let Some(&c @ b'!'..) = self.b.get(self.i) {
                self.i += 1;
                return Some(c);
            }
        }
        self.i -= 1;
        self.skip_whitespace();
        self.next()
    }

    /// Skips whitespace. Pretty-printed answers are a third indentation: a run of spaces
    /// is measured eight bytes at a time.
    #[inline(never)]
    fn skip_whitespace(&mut self) {
        loop {
            match self.peek() {
                Some(b' ') => match self.rest_of().first_chunk::<8>() {
                    Some(&eight) => {
                        let other = u64::from_le_bytes(eight) ^ u64::from_le_bytes([b' '; 8]);
                        // Little-endian: the lowest set bit is in the first non-space.
                        self.i += (other.trailing_zeros() / 8) as usize;
                    }
                    None => self.i += 1,
                },
                Some(b'\n' | b'\t' | b'\r') => self.i += 1,
                _ => return,
            }
        }
    }

    /// The next byte that is not whitespace, left to be read.
    #[inline(always)]
    fn peek_token(&mut self) -> Option<u8> {
        let b = self.token()?;
        self.i -= 1;
        Some(b)
    }

    /// Only whitespace may follow the answer.
    fn end(&mut self) -> Option<()> {
        self.token().is_none().then_some(())
    }

    /// `null`, `true` or `false`, or `\\u` (`word` itself).
    #[inline(always)]
    fn word(&mut self, word: &[u8]) -> Option<()> {
        if !self.rest_of().starts_with(word) {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// A struct as serde's derive reads one from serde_json: an object whose keys among
    /// `names` are handed to `field` (once each) and the others skipped, or an array whose
    /// elements are handed to `field` in order.
    #[inline(always)]
    fn fields<const N: usize>(
        &mut self,
        names: &[&[u8]; N],
        mut field: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        match self.token()? {
            b'{' => {
                if self.peek_token()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                let mut seen = 0u32;
                loop {
                    if self.token()? != b'"' {
                        return None;
                    }
                    let key = self.key(names)?;
                    if self.token()? != b':' {
                        return None;
                    }
                    match key {
                        Some(k) => {
                            // serde's derive refuses a duplicate field, even a null one.
                            if seen & (1 << k) != 0 {
                                return None;
                            }
                            seen |= 1 << k;
                            field(self, k)?;
                        }
                        None => self.skip()?,
                    }
                    match self.token()? {
                        b',' => {}
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                if self.peek_token()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                // Every field's reader refuses a `]`, so `[1,]` is refused as serde does.
                for k in 0..N {
                    field(self, k)?;
                    match self.token()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
                // More elements than fields.
                None
            }
            _ => None,
        }
    }

    /// A key, after its opening quote: the index of the one of `names` it is, if any.
    #[inline(always)]
    fn key<const N: usize>(&mut self, names: &[&[u8]; N]) -> Option<Option<usize>> {
        let rest = self.rest_of();
        // Most keys are one of the names, as is: compared, not scanned.
        for (k, name) in names.iter().enumerate() {
            if rest.get(name.len()) == Some(&b'"') && rest.starts_with(name) {
                self.i += name.len() + 1;
                return Some(Some(k));
            }
        }
        // Other keys that are plain ASCII are none of them.
        let len = plain(rest, true);
        if rest.get(len) == Some(&b'"') {
            self.i += len + 1;
            return Some(None);
        }
        let text = self.text()?;
        if !text.escaped {
            return Some(None);
        }
        // `"us\u0061ge"` is `usage` to serde: unescape into a buffer as long as the
        // longest name; a longer key is none of them.
        let mut buf = [0u8; 32];
        let mut len = 0;
        unescape(&self.b[text.start..text.end], |piece| {
            if let Some(to) = buf.get_mut(len..len + piece.len()) {
                to.copy_from_slice(piece.as_bytes());
            }
            len += piece.len();
        })?;
        let key = buf.get(..len);
        Some(names.iter().position(|name| Some(*name) == key))
    }

    /// `null` as `None`, anything else read by `read`: serde's `Option`.
    #[inline(always)]
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek_token()? == b'n' {
            self.word(b"null")?;
            return Some(None);
        }
        read(self).map(Some)
    }

    /// A token count, read as serde reads a `u64` from serde_json.
    #[inline(always)]
    fn count(&mut self) -> Option<u64> {
        let first = self.token()?;
        let mut n = match first {
            b'0'..=b'9' => u64::from(first - b'0'),
            // `-1` is an `i64` and `-0` a float to serde_json: neither is a `u64`.
            _ => return None,
        };
        if first != b'0' {
            while let Some(digit @ b'0'..=b'9') = self.peek() {
                // Past `u64::MAX` serde_json reads a float.
                n = n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
                self.i += 1;
            }
        }
        // A fraction or an exponent makes a float; a digit after a leading `0` is an
        // invalid number. (What follows would be refused anyway; this says why.)
        match self.peek() {
            Some(b'.' | b'e' | b'E' | b'0'..=b'9') => None,
            _ => Some(n),
        }
    }

    /// A string that is read, after any whitespace.
    #[inline(always)]
    fn string(&mut self) -> Option<Text> {
        if self.token()? != b'"' {
            return None;
        }
        self.text()
    }

    /// `usage`: `WireUsage`'s fields, in its order.
    #[inline(always)]
    fn usage(&mut self) -> Option<Usage> {
        let (mut prompt, mut completion) = (0, 0);
        let (mut cached, mut cache_hit, mut reasoning) = (None, None, None);
        let names: &[&[u8]; 5] = &[
            b"prompt_tokens",
            b"completion_tokens",
            b"prompt_tokens_details",
            b"prompt_cache_hit_tokens",
            b"completion_tokens_details",
        ];
        self.fields(
            names,
            #[inline(always)]
            |s, field| {
                match field {
                    0 => prompt = s.count()?,
                    1 => completion = s.count()?,
                    2 => cached = s.optional(|s| s.details(0))?.flatten(),
                    3 => cache_hit = s.optional(|s| s.count())?,
                    _ => reasoning = s.optional(|s| s.details(1))?.flatten(),
                }
                Some(())
            },
        )?;
        // DeepSeek says `prompt_cache_hit_tokens` where OpenAI has `cached_tokens`.
        Some(
            Usage::new(prompt, completion)
                .with_cached(cached.or(cache_hit).unwrap_or(0))
                .with_reasoning(reasoning.unwrap_or(0)),
        )
    }

    /// `prompt_tokens_details` or `completion_tokens_details`: both fields are read (their
    /// types checked) and the `wanted` one returned.
    #[inline(always)]
    fn details(&mut self, wanted: usize) -> Option<Option<u64>> {
        let mut counts = [None; 2];
        self.fields(
            &[b"cached_tokens", b"reasoning_tokens"],
            #[inline(always)]
            |s, field| {
                counts[field] = s.optional(|s| s.count())?;
                Some(())
            },
        )?;
        Some(counts[wanted])
    }

    /// `choices`: an array (not `null`) of choices, summed as they go by.
    #[inline(always)]
    fn choices(&mut self, all: &mut Choices) -> Option<()> {
        if self.token()? != b'[' {
            return None;
        }
        if self.peek_token()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            // A choice is a struct: `null` is refused.
            let (mut chars, mut finish_reason) = (0, None);
            self.fields(
                &[b"message", b"finish_reason"],
                #[inline(always)]
                |s, field| {
                    match field {
                        0 => chars = s.optional(|s| s.message())?.flatten().unwrap_or(0),
                        _ => finish_reason = s.optional(|s| s.string())?,
                    }
                    Some(())
                },
            )?;
            all.output_chars += chars;
            if finish_reason.is_some() {
                all.finish_reason = finish_reason;
            }
            match self.token()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A choice's `message`: the characters of its `content` string, if it has one.
    #[inline(always)]
    fn message(&mut self) -> Option<Option<u64>> {
        let mut chars = None;
        self.fields(
            &[b"content"],
            #[inline(always)]
            |s, _| {
                chars = s.optional(|s| s.string().map(|text| text.chars))?;
                Some(())
            },
        )?;
        Some(chars)
    }

    /// A string that is read, after its opening quote, checked as serde_json checks one
    /// it unescapes into a `&str`.
    fn text(&mut self) -> Option<Text> {
        let start = self.i;
        let mut escaped = false;
        // Raw bytes that are not characters of their own: escapes and UTF-8 tails.
        let mut extra = 0;
        loop {
            self.i += plain(self.rest_of(), true);
            match CLASS[usize::from(self.next()?)] {
                QUOTE => {
                    let end = self.i - 1;
                    return Some(Text {
                        start,
                        end,
                        escaped,
                        chars: (end - start - extra) as u64,
                    });
                }
                BACKSLASH => {
                    escaped = true;
                    extra += self.escape()?;
                }
                CONTROL => return None,
                _ => {
                    // Non-ASCII text runs to the next quote, backslash or control byte:
                    // those are ASCII, so the run holds whole characters when the body
                    // is UTF-8 (serde_json checks what it reads from bytes).
                    let run = self.i - 1;
                    self.i += plain(self.rest_of(), false);
                    let run = std::str::from_utf8(&self.b[run..self.i]).ok()?;
                    extra += run.len() - run.chars().count();
                }
            }
        }
    }

    /// An escape of a string that is read, after its backslash. Returns its length less
    /// the one character it stands for.
    fn escape(&mut self) -> Option<usize> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(1),
            b'u' => match self.hex()? {
                // Unescaping into a `String`, serde_json wants surrogates in pairs.
                0xDC00..=0xDFFF => None,
                0xD800..=0xDBFF => {
                    self.word(b"\\u")?;
                    matches!(self.hex()?, 0xDC00..=0xDFFF).then_some(11)
                }
                _ => Some(5),
            },
            _ => None,
        }
    }

    /// The four hex digits of a `\u` escape.
    #[inline(always)]
    fn hex(&mut self) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + 4)?;
        self.i += 4;
        hex(digits)
    }

    /// A string's text, its escapes undone.
    fn owned(&self, text: Text) -> Option<String> {
        let raw = &self.b[text.start..text.end];
        if !text.escaped {
            // OpenAI's reasons are copied without checking their UTF-8 again.
            let known = match raw {
                b"stop" => "stop",
                b"length" => "length",
                b"tool_calls" => "tool_calls",
                b"content_filter" => "content_filter",
                _ => std::str::from_utf8(raw).ok()?,
            };
            return Some(known.to_owned());
        }
        let mut out = String::with_capacity(raw.len());
        unescape(raw, |piece| out.push_str(piece))?;
        Some(out)
    }

    /// Skips a value as serde_json's `ignore_value` does: checked as JSON, its strings'
    /// escapes and control characters included, but not their UTF-8 or surrogates.
    #[inline(always)]
    fn skip(&mut self) -> Option<()> {
        // Most skipped values are strings, numbers and nulls: no nesting to keep.
        match self.peek_token()? {
            b'"' => {
                self.i += 1;
                self.skip_string()
            }
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => self.skip_nested(),
        }
    }

    /// Skips any value, arrays and objects included.
    #[inline(never)]
    fn skip_nested(&mut self) -> Option<()> {
        // A copy of the cursor that stays in registers (the caller's is behind a pointer).
        let mut local = Scan {
            b: self.b,
            i: self.i,
        };
        let done = local.skip_any();
        self.i = local.i;
        done
    }

    #[inline(always)]
    fn skip_any(&mut self) -> Option<()> {
        let mut open = Nesting::default();
        'value: loop {
            match self.peek_token()? {
                b'{' => {
                    self.i += 1;
                    if self.peek_token()? == b'}' {
                        self.i += 1;
                    } else {
                        open.push(true);
                        self.skip_key()?;
                        continue 'value;
                    }
                }
                b'[' => {
                    self.i += 1;
                    if self.peek_token()? == b']' {
                        self.i += 1;
                    } else {
                        open.push(false);
                        continue 'value;
                    }
                }
                b'"' => {
                    self.i += 1;
                    self.skip_string()?;
                }
                b'n' => self.word(b"null")?,
                b't' => self.word(b"true")?,
                b'f' => self.word(b"false")?,
                b'-' | b'0'..=b'9' => self.skip_number()?,
                _ => return None,
            }
            // A value ended: close the containers it ends.
            while let Some(object) = open.top() {
                match self.token()? {
                    b',' => {
                        if object {
                            self.skip_key()?;
                        }
                        continue 'value;
                    }
                    b']' if !object => open.pop(),
                    b'}' if object => open.pop(),
                    _ => return None,
                }
            }
            return Some(());
        }
    }

    /// A skipped object's key and its colon.
    #[inline(always)]
    fn skip_key(&mut self) -> Option<()> {
        if self.token()? != b'"' {
            return None;
        }
        self.skip_string()?;
        (self.token()? == b':').then_some(())
    }

    /// A skipped string, after its opening quote.
    #[inline(always)]
    fn skip_string(&mut self) -> Option<()> {
        loop {
            self.i += plain(self.rest_of(), false);
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        self.hex()?;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// A skipped number, its minus sign included.
    #[inline(always)]
    fn skip_number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    #[inline(always)]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// At least one digit.
    #[inline(always)]
    fn some_digits(&mut self) -> Option<()> {
        let from = self.i;
        self.digits();
        (self.i > from).then_some(())
    }
}

/// How many bytes `text` starts with that are string text needing no second look: all
/// but quotes, backslashes, control bytes and, when `stop_high`, non-ASCII bytes. Eight
/// bytes are looked at together while eight remain (most strings are short keys, some
/// are long answers).
#[inline(always)]
fn plain(text: &[u8], stop_high: bool) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES * 0x80;
    // The high bit of each byte that is zero (exact for the lowest such byte: borrows
    // only go up, so the first flagged byte is a true one, which is all that is used).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut words = text.chunks_exact(8);
    let mut n = 0;
    for eight in &mut words {
        let word = u64::from_le_bytes(eight.try_into().unwrap_or_default());
        let mut stops = zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')))
            // Bytes below 0x20.
            | (word.wrapping_sub(ONES * 0x20) & !word);
        if stop_high {
            stops |= word;
        }
        let stops = stops & HIGHS;
        if stops != 0 {
            // Little-endian: the lowest set bit is the first byte.
            return n + stops.trailing_zeros() as usize / 8;
        }
        n += 8;
    }
    let stop = |&b: &u8| match CLASS[usize::from(b)] {
        PLAIN => false,
        HIGH => stop_high,
        _ => true,
    };
    let tail = words.remainder();
    n + tail.iter().position(stop).unwrap_or(tail.len())
}

/// The four hex digits of a `\u` escape.
fn hex(digits: &[u8]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0, |n, &d| Some(n << 4 | char::from(d).to_digit(16)?))
}

/// Hands the text of a string's raw bytes (checked by [`Scan::text`]) to `push`, piece
/// by piece.
fn unescape(raw: &[u8], mut push: impl FnMut(&str)) -> Option<()> {
    let mut rest = raw;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        push(std::str::from_utf8(&rest[..at]).ok()?);
        let (c, len) = match *rest.get(at + 1)? {
            b'u' => {
                let unit = hex(rest.get(at + 2..at + 6)?)?;
                if (0xD800..0xDC00).contains(&unit) {
                    let low = hex(rest.get(at + 8..at + 12)?)?;
                    let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    (char::from_u32(c)?, 12)
                } else {
                    (char::from_u32(unit)?, 6)
                }
            }
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            other => (char::from(other), 2),
        };
        push(c.encode_utf8(&mut [0; 4]));
        rest = &rest[at + len..];
    }
    push(std::str::from_utf8(rest).ok()?);
    Some(())
}

/// The containers open around a skipped value, one bit each (set for an object). Values
/// nest without limit (see the module docs): past 64 levels the bits spill into a `Vec`.
#[derive(Default)]
struct Nesting {
    depth: usize,
    bits: u64,
    spill: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth != 0 && self.depth % 64 == 0 {
            self.spill.push(self.bits);
            self.bits = 0;
        }
        self.bits = self.bits << 1 | u64::from(object);
        self.depth += 1;
    }

    /// Whether the innermost container is an object; `None` when none is open.
    fn top(&self) -> Option<bool> {
        (self.depth != 0).then_some(self.bits & 1 == 1)
    }

    fn pop(&mut self) {
        self.bits >>= 1;
        self.depth -= 1;
        if self.depth != 0 && self.depth % 64 == 0 {
            self.bits = self.spill.pop().unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests;
