use bytes::{BufMut, Bytes, BytesMut};

/// Encodes one event: an optional `event:` line, one `data:` line per line of `data`,
/// and the blank line that ends it.
///
/// ```
/// assert_eq!(&tollgate::sse::encode(Some("ping"), "{}")[..], b"event: ping\ndata: {}\n\n");
/// assert_eq!(&tollgate::sse::encode(None, "a\nb")[..], b"data: a\ndata: b\n\n");
/// ```
pub fn encode(event: Option<&str>, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 32);
    if let Some(event) = event {
        out.put_slice(b"event: ");
        out.put_slice(event.as_bytes());
        out.put_u8(b'\n');
    }
    for line in data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// Encodes a JSON value as one event (compact JSON has no newlines, so one `data:` line).
pub fn encode_json(event: Option<&str>, value: &serde_json::Value) -> Bytes {
    encode(event, &value.to_string())
}
