//! Reading stream events without allocating: JSON strings borrowed raw and unescaped
//! into a buffer the decoder keeps, and sequences kept inline.
//!
//! serde_json unescapes a string with escapes (`\n`, `\"`, `\u00e9`: most model output
//! and every tool-call argument) into a new `String`, after growing a scratch buffer of
//! its own; both are per chunk. A text field read as `&RawValue` is borrowed as the
//! provider sent it; [`text`] returns it as is when it has no escapes, else unescapes it
//! into the decoder's `scratch`, whose capacity is kept from chunk to chunk.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// `serde_json::from_slice`, with the body's UTF-8 checked once up front.
///
/// From bytes, serde_json validates the UTF-8 of every key and string it reads, one
/// `str::from_utf8` call each (about 100 instructions for a short key, a fifth of the
/// cost of reading it); from a `&str` it trusts the text. A body that is not UTF-8
/// goes the old way, so the result and the error are the same either way.
pub(crate) fn from_slice<'a, T: Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        // Strings serde_json skips unread need not be UTF-8: let it decide.
        Err(_) => serde_json::from_slice(body),
    }
}

/// The text of a raw JSON value when it is a string (`None` for `null` and the rest).
pub(crate) fn text<'s>(raw: Option<&'s RawValue>, scratch: &'s mut String) -> Option<&'s str> {
    let inner = raw?.get().strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(inner);
    }
    scratch.clear();
    let mut rest = inner;
    while let Some(i) = rest.find('\\') {
        scratch.push_str(&rest[..i]);
        let escape = rest.as_bytes().get(i + 1).copied().unwrap_or(b'\\');
        rest = rest.get(i + 2..).unwrap_or_default();
        let c = match escape {
            b'n' => '\n',
            b't' => '\t',
            b'r' => '\r',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'u' => {
                let (c, after) = unicode(rest);
                rest = after;
                c
            }
            // `\"`, `\\`, `\/` (serde_json already refused any other escape).
            other => char::from(other),
        };
        scratch.push(c);
    }
    scratch.push_str(rest);
    Some(scratch)
}

/// The number of characters of a raw JSON string once unescaped (0 for `null` and the
/// rest), counted without unescaping it: the outcome's estimate of output text.
pub(crate) fn chars(raw: Option<&RawValue>) -> u64 {
    let Some(inner) = raw.and_then(|r| r.get().strip_prefix('"')?.strip_suffix('"')) else {
        return 0;
    };
    let mut count = 0;
    let mut rest = inner;
    while let Some(i) = rest.find('\\') {
        count += rest[..i].chars().count() as u64 + 1;
        let escape = rest.as_bytes().get(i + 1).copied();
        rest = rest.get(i + 2..).unwrap_or_default();
        if escape == Some(b'u') {
            rest = unicode(rest).1;
        }
    }
    count + rest.chars().count() as u64
}

/// A `\uXXXX` escape (the part after `\u`), with its low surrogate when it has one; a
/// lone surrogate becomes U+FFFD.
fn unicode(rest: &str) -> (char, &str) {
    let hex = |s: &str| s.get(..4).and_then(|h| u32::from_str_radix(h, 16).ok());
    let Some(high) = hex(rest) else {
        return ('\u{fffd}', rest);
    };
    let rest = &rest[4..];
    if (0xD800..0xDC00).contains(&high) {
        if let Some(low) = rest.strip_prefix("\\u").and_then(hex) {
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return (char::from_u32(c).unwrap_or('\u{fffd}'), &rest[6..]);
            }
        }
    }
    (char::from_u32(high).unwrap_or('\u{fffd}'), rest)
}

/// A string borrowed from the event when it has no escapes. serde borrows a bare
/// `Cow<'a, str>` field marked `borrow`, but an `Option<Cow<'a, str>>` always gets an
/// owned copy: optional fields use `Option<Str<'a>>`.
#[derive(Debug, Default)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'a> From<Str<'a>> for Cow<'a, str> {
    fn from(s: Str<'a>) -> Self {
        s.0
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// The first element of a JSON array (the rest skipped): the one choice or candidate a
/// translated stream carries, without a `Vec` per chunk.
pub(crate) struct First<T>(pub(crate) Option<T>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_unit<E>(self) -> Result<First<T>, E> {
                Ok(First(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// The elements of a JSON array, the first [`INLINE`] of them kept inline: a chunk's
/// parts or tool-call deltas without a `Vec` per chunk (a longer array spills the rest).
pub(crate) struct Few<T> {
    inline: [Option<T>; INLINE],
    more: Vec<T>,
}

const INLINE: usize = 4;

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few {
            inline: std::array::from_fn(|_| None),
            more: Vec::new(),
        }
    }
}

impl<T> IntoIterator for Few<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<
        std::iter::Flatten<std::array::IntoIter<Option<T>, INLINE>>,
        std::vec::IntoIter<T>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.inline.into_iter().flatten().chain(self.more)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Few<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Few<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_unit<E>(self) -> Result<Few<T>, E> {
                Ok(Few::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Few<T>, A::Error> {
                let mut few = Few::default();
                let mut i = 0;
                while let Some(item) = seq.next_element()? {
                    match few.inline.get_mut(i) {
                        Some(slot) => *slot = Some(item),
                        None => few.more.push(item),
                    }
                    i += 1;
                }
                Ok(few)
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_count_the_unescaped_text() {
        fn raw(s: &str) -> &RawValue {
            serde_json::from_str(s).unwrap()
        }
        for text in [
            r"plain",
            r#"caf\u00e9 \"q\" \n\\"#,
            r"\ud83d\ude00 ok",
            "",
            r"\u00e9t\u00e9",
        ] {
            let json = format!("\"{text}\"");
            let decoded: String = serde_json::from_str(&json).unwrap();
            assert_eq!(
                chars(Some(raw(&json))),
                decoded.chars().count() as u64,
                "{text}"
            );
        }
        assert_eq!(chars(Some(raw("null"))), 0);
        assert_eq!(chars(None), 0);
    }

    fn unescaped(json: &str) -> String {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        let mut scratch = String::new();
        text(Some(raw), &mut scratch).unwrap().to_owned()
    }

    #[test]
    fn text_unescapes_like_serde_json() {
        for json in [
            r#""plain""#,
            r#""a\nb\t\"q\" \\ \/ \b\f\r""#,
            r#""caf\u00e9 \u00E9t\u00e9 é""#,
            r#""emoji \ud83d\ude00 end""#,
            r#""lone \ud83d x""#,
            r#""""#,
        ] {
            let ours = unescaped(json);
            // serde_json refuses lone surrogates; ours replaces them.
            match serde_json::from_str::<String>(json) {
                Ok(theirs) => assert_eq!(ours, theirs, "{json}"),
                Err(_) => assert_eq!(ours, "lone \u{fffd} x"),
            }
        }
        let null: &RawValue = serde_json::from_str("null").unwrap();
        assert_eq!(text(Some(null), &mut String::new()), None);
    }

    #[test]
    fn first_and_few_keep_what_they_should() {
        let first: First<u32> = serde_json::from_str("[1, {\"x\": 2}, 3]").unwrap();
        assert_eq!(first.0, Some(1));
        let few: Few<u32> = serde_json::from_str("[1, 2, 3, 4, 5, 6]").unwrap();
        assert_eq!(few.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
        let none: Few<u32> = serde_json::from_str("null").unwrap();
        assert_eq!(none.into_iter().count(), 0);
    }
}
