//! `POST .../embeddings`: deterministic vectors from the words of the input.
//!
//! Each lowercase word (a run of letters and digits) is hashed with FNV-1a into one of
//! `dimensions` buckets (64 unless the request sets `dimensions`) and the counts are
//! L2-normalised. Texts that share words therefore have a high cosine similarity, and
//! the same text always gets the same vector: enough to test a semantic cache without
//! a model.

use bytes::Bytes;
use serde_json::{json, Value};

use super::openai::{model, parse_object, words};
use super::provider::{BadRequest, Ctx, Reply};

/// The vector length when the request does not set `dimensions`.
const DEFAULT_DIMENSIONS: usize = 64;

/// The longest vector the mock makes.
const MAX_DIMENSIONS: u64 = 8192;

/// `POST .../embeddings`.
pub(crate) fn embeddings(ctx: &Ctx<'_>, body: &[u8]) -> Result<Reply, BadRequest> {
    let req = parse_object(body)?;
    let model = model(&req)?;
    let inputs = inputs(req.get("input")).ok_or_else(|| {
        BadRequest::new(
            "`input` must be a string, an array of strings, an array of token ids or an \
             array of arrays of token ids.",
            "input",
        )
    })?;
    let dimensions = match req.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(value) => match value.as_u64() {
            Some(n) if (1..=MAX_DIMENSIONS).contains(&n) => n as usize,
            _ => {
                let message = "`dimensions` must be an integer from 1 to 8192.";
                return Err(BadRequest::new(message, "dimensions"));
            }
        },
    };
    let base64 = match req.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(format)) if format == "float" => false,
        Some(Value::String(format)) if format == "base64" => true,
        Some(_) => {
            let message = "`encoding_format` must be \"float\" or \"base64\".";
            return Err(BadRequest::new(message, "encoding_format"));
        }
    };

    if ctx.script.malformed {
        return Ok(Reply::Json(Bytes::from_static(
            b"{\"object\":\"list\",\"data\":[",
        )));
    }

    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embed(text, dimensions);
            let embedding = if base64 {
                Value::String(encode_base64(&f32_le_bytes(&vector)))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let tokens = inputs.iter().map(|text| words(text)).sum::<u64>().max(1);
    let list = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    });
    Ok(Reply::Json(Bytes::from(list.to_string())))
}

/// The texts to embed: a string, strings, token ids (each id a word) or arrays of them.
fn inputs(input: Option<&Value>) -> Option<Vec<String>> {
    let tokens = |ids: &[Value]| -> Option<String> {
        let ids: Option<Vec<String>> = ids
            .iter()
            .map(|id| Some(id.as_u64()?.to_string()))
            .collect();
        Some(ids?.join(" "))
    };
    match input? {
        Value::String(text) => Some(vec![text.clone()]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_number) => Some(vec![tokens(items)?]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Some(text.clone()),
                Value::Array(ids) => tokens(ids),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The hashed bag-of-words vector of `text`, L2-normalised (all zeros for no words).
pub(crate) fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0f32; dimensions];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let bucket = fnv1a(word.to_lowercase().as_bytes()) % dimensions as u64;
        vector[bucket as usize] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The little-endian bytes of the floats, as the OpenAI API base64-encodes them.
fn f32_le_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Standard base64 with padding (RFC 4648 §4).
fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, output) in cases {
            assert_eq!(encode_base64(input.as_bytes()), output);
        }
        assert_eq!(encode_base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn vectors_are_normalised_and_word_based() {
        let a = embed("The cat sat", 64);
        assert_eq!(a, embed("the CAT, sat!", 64));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(embed("", 8).iter().all(|&x| x == 0.0));
        assert_eq!(embed("x", 3).len(), 3);
    }

    #[test]
    fn inputs_accepts_openai_shapes() {
        assert_eq!(inputs(Some(&json!("a"))), Some(vec!["a".into()]));
        assert_eq!(
            inputs(Some(&json!(["a", "b"]))),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(inputs(Some(&json!([1, 2]))), Some(vec!["1 2".into()]));
        assert_eq!(
            inputs(Some(&json!([[1], [2, 3]]))),
            Some(vec!["1".into(), "2 3".into()])
        );
        assert_eq!(inputs(Some(&json!([]))), None);
        assert_eq!(inputs(Some(&json!([1, "a"]))), None);
        assert_eq!(inputs(Some(&json!({"a": 1}))), None);
        assert_eq!(inputs(None), None);
    }
}
