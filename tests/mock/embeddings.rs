//! Embeddings: deterministic, word-based, float or base64.

use serde_json::{json, Value};
use tollgate::testing::MockProvider;

use super::{call, json, post};

async fn embed(mock: &MockProvider, body: Value) -> Value {
    let res = call(mock, post("embeddings", &body, &[])).await;
    assert_eq!(res.status(), 200);
    json(res).await
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn vectors_are_deterministic_and_word_based() {
    let mock = MockProvider::new();
    let texts = [
        "How do I reset my password?",
        "how do i reset my password",
        "How can I reset my account password?",
        "Best pizza toppings in Naples",
    ];
    let v = embed(&mock, json!({ "model": "mock/embed", "input": texts })).await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "mock/embed");
    assert_eq!(v["usage"]["prompt_tokens"], 6 + 6 + 7 + 5);
    assert_eq!(v["usage"]["total_tokens"], 24);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    let vectors: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            floats(&d["embedding"])
        })
        .collect();
    assert!(vectors.iter().all(|v| v.len() == 64));
    assert!((cosine(&vectors[0], &vectors[1]) - 1.0).abs() < 1e-5);
    let close = cosine(&vectors[0], &vectors[2]);
    let far = cosine(&vectors[0], &vectors[3]);
    assert!(
        close > 0.7 && far < 0.3 && close > far,
        "close {close}, far {far}"
    );

    let again = embed(&mock, json!({ "model": "mock/embed", "input": texts[0] })).await;
    assert_eq!(floats(&again["data"][0]["embedding"]), vectors[0]);
}

/// Decodes standard base64 (the test's own decoder, independent of the mock's encoder).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        acc = acc << 6 | u32::from(value(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[tokio::test]
async fn base64_is_little_endian_f32() {
    let mock = MockProvider::new();
    let plain = embed(
        &mock,
        json!({ "model": "m", "input": "a b c", "dimensions": 5 }),
    )
    .await;
    let encoded = embed(
        &mock,
        json!({ "model": "m", "input": "a b c", "dimensions": 5, "encoding_format": "base64" }),
    )
    .await;
    let bytes = base64_decode(encoded["data"][0]["embedding"].as_str().unwrap());
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, floats(&plain["data"][0]["embedding"]));
    assert_eq!(decoded.len(), 5);
}

#[tokio::test]
async fn bad_embedding_requests_are_400() {
    let mock = MockProvider::new();
    let cases = [
        (json!({ "input": "x" }), "model"),
        (json!({ "model": "m" }), "input"),
        (json!({ "model": "m", "input": [] }), "input"),
        (json!({ "model": "m", "input": [{ "text": "x" }] }), "input"),
        (
            json!({ "model": "m", "input": "x", "dimensions": 0 }),
            "dimensions",
        ),
        (
            json!({ "model": "m", "input": "x", "encoding_format": "hex" }),
            "encoding_format",
        ),
    ];
    for (body, param) in cases {
        let res = call(&mock, post("embeddings", &body, &[])).await;
        assert_eq!(res.status(), 400, "{body}");
        assert_eq!(json(res).await["error"]["param"], param, "{body}");
    }
}
