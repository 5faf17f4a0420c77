//! Cache keys: the [`MakeCacheKey`] policy and the default canonical hash.

use std::fmt;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::Request;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::request::LlmRequest;
use crate::{Body, Dialect, Endpoint};

/// The identity of a cached answer: a SHA-256 digest. See [`DefaultMakeCacheKey`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

/// Hashes 8 of the digest's bytes, not all 32: they are already uniform, and hash
/// tables (moka's, the single-flight map) hash every key again each time they rehash,
/// which at a full store is a measurable part of a miss (`benches/README.md`). The
/// tables use a randomly seeded hasher, so a client grinding prompts cannot aim at
/// one bucket.
impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

impl CacheKey {
    /// A key from its 32 digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        CacheKey(bytes)
    }

    /// The digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest in lowercase hex (64 characters), as stores use it in their keys.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 15)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..16])
    }
}

/// The tenant a request belongs to, for the cache: entries are never shared between
/// two scopes. Put it in the request extensions to choose the scope explicitly (the
/// authentication layer will insert the caller's key id or team); without it,
/// [`DefaultMakeCacheKey`] derives one from the credential headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheScope(pub Arc<str>);

impl CacheScope {
    /// A scope with this name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        CacheScope(name.into())
    }
}

/// Says under which key a request's answer is cached, or that it is not cached at all.
/// See the [module docs](crate::cache).
///
/// Implemented for closures `Fn(&Request<Body>, &LlmRequest) -> Option<CacheKey>` and by
/// [`DefaultMakeCacheKey`]. Returning `None` sends the request upstream uncached
/// (`x-tollgate-cache: bypass`): that is how a policy per key or per route is written.
pub trait MakeCacheKey: Send + Sync + 'static {
    /// The key of `req`, whose parsed body is `llm`; `None` to bypass the cache.
    fn make_cache_key(&self, req: &Request<Body>, llm: &LlmRequest) -> Option<CacheKey>;
}

impl<F> MakeCacheKey for F
where
    F: Fn(&Request<Body>, &LlmRequest) -> Option<CacheKey> + Send + Sync + 'static,
{
    fn make_cache_key(&self, req: &Request<Body>, llm: &LlmRequest) -> Option<CacheKey> {
        self(req, llm)
    }
}

/// Says which model a request for a model name will be served by, so that the cache keys
/// an answer by the model that produced it: an alias and its target share an entry, and
/// an alias pointed elsewhere (a configuration reload) stops finding the old model's
/// answers.
///
/// Implemented for closures `Fn(&str) -> Option<Arc<str>>` and, with the `routing`
/// feature, by `tollgate::routing::Router`, which resolves its aliases as routing
/// will. Return `None` to keep the requested name (a name that stands for itself). See
/// [`DefaultMakeCacheKey::resolve_model`].
pub trait ResolveModel: Send + Sync + 'static {
    /// The model a request for `requested` resolves to, or `None` for `requested` itself.
    fn resolve_model(&self, requested: &str) -> Option<Arc<str>>;
}

impl<F> ResolveModel for F
where
    F: Fn(&str) -> Option<Arc<str>> + Send + Sync + 'static,
{
    fn resolve_model(&self, requested: &str) -> Option<Arc<str>> {
        self(requested)
    }
}

/// Scopes by the authenticated key (feature `auth`): the key's id, whichever header
/// carried it. Returns false when the request has no `Principal`.
fn principal_scope(out: &mut Canonical, req: &Request<Body>) -> bool {
    #[cfg(feature = "auth")]
    if let Some(principal) = req.extensions().get::<crate::auth::Principal>() {
        out.put(b"key\0");
        out.field(principal.key_id.as_bytes());
        return true;
    }
    let _ = (out, req);
    false
}

/// The default key: a SHA-256 of the tenant scope, the endpoint (so the dialect), the
/// model, the answer's shape (stream or not, and OpenAI's `include_usage`) and a
/// canonical form of every other body field.
///
/// - **Scope**: the [`CacheScope`] extension when present; else the authenticated key's
///   id from the auth layer's `Principal` (feature `auth`; set a [`CacheScope`] of the
///   team to share entries across a team's keys); otherwise the `authorization`,
///   `x-api-key` or `x-goog-api-key` header (hashed with the rest, never stored), so
///   two callers with different credentials never share an entry; `public` for a
///   request with none of them.
/// - **Model**: the requested name, or, with [`resolve_model`](Self::resolve_model),
///   the model it resolves to (an alias's target), so `gpt4` (an alias of `gpt-4o`) and
///   `gpt-4o` share entries. Without a resolver an alias and its target are separate
///   entries, and re-pointing the alias would keep serving the old model's answers
///   until they expire: give the cache the router of the same configuration
///   ([`CacheLayer::resolve_model`](super::CacheLayer::resolve_model)).
/// - **Canonical body**: the parsed JSON with object keys sorted and numbers compared by
///   value (`0` and `0.0` are the same temperature), so whitespace and key order do not
///   matter. Fields that cannot change the answer are left out: `stream`,
///   `stream_options`, `user`, `metadata`, `store`. Everything else counts, including
///   fields tollgate does not know: an unknown field that changes the answer must not
///   share an entry with a request without it.
///
/// The canonical form is written straight into the hasher as the JSON tree is walked
/// (no canonical copy of the body is built, and no allocation is made when the parser
/// kept object keys sorted, as serde_json does by default).
#[derive(Clone, Default)]
pub struct DefaultMakeCacheKey {
    // Dynamic: one indirect call per request, and no router type in the key's type.
    resolve: Option<Arc<dyn ResolveModel>>,
}

impl DefaultMakeCacheKey {
    /// The default key maker: the model is the requested name.
    pub const fn new() -> Self {
        DefaultMakeCacheKey { resolve: None }
    }

    /// Keys by the model `resolve` says a request's model name resolves to (an alias's
    /// target) instead of the requested name. Use the `Router` (feature `routing`)
    /// of the same configuration as the routing layer below the cache.
    pub fn resolve_model(mut self, resolve: impl ResolveModel) -> Self {
        self.resolve = Some(Arc::new(resolve));
        self
    }
}

impl fmt::Debug for DefaultMakeCacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultMakeCacheKey")
            .field("resolve_model", &self.resolve.is_some())
            .finish()
    }
}

impl MakeCacheKey for DefaultMakeCacheKey {
    fn make_cache_key(&self, req: &Request<Body>, llm: &LlmRequest) -> Option<CacheKey> {
        let resolved = self
            .resolve
            .as_ref()
            .and_then(|r| r.resolve_model(llm.model()));
        let model = resolved.as_deref().unwrap_or(llm.model());
        Some(CacheKey(request_hash(
            req,
            llm,
            model,
            b"tollgate-cache-v2\0",
            &[],
        )))
    }
}

/// The fields that carry the prompt: what a semantic cache compares by meaning.
pub(crate) const PROMPT_FIELDS: &[&str] = &["messages", "system", "input", "contents"];

/// What a semantic match must share exactly: the tenant, endpoint, model, answer shape
/// and every body field but the prompt's.
pub(crate) fn semantic_scope(req: &Request<Body>, llm: &LlmRequest) -> [u8; 32] {
    request_hash(
        req,
        llm,
        llm.model(),
        b"tollgate-semantic-v2\0",
        PROMPT_FIELDS,
    )
}

/// SHA-256 of the tenant scope, endpoint, `model`, answer shape and the canonical body,
/// leaving out the [`ignored`] fields and `skip`.
fn request_hash(
    req: &Request<Body>,
    llm: &LlmRequest,
    model: &str,
    tag: &[u8],
    skip: &[&str],
) -> [u8; 32] {
    let mut out = Canonical::new();
    out.put(tag);
    match req.extensions().get::<CacheScope>() {
        Some(scope) => {
            out.put(b"scope\0");
            out.field(scope.0.as_bytes());
        }
        None if principal_scope(&mut out, req) => {}
        None => credential_scope(&mut out, req),
    }
    out.field(endpoint_name(llm.endpoint()).as_bytes());
    out.field(model.as_bytes());
    let usage = llm.include_usage() && llm.dialect() == Dialect::OpenAi;
    out.put(&[u8::from(llm.is_stream()), u8::from(usage)]);
    match llm.json() {
        Value::Object(map) => {
            let kept = |(k, _): &(&String, &Value)| !ignored(k) && !skip.contains(&k.as_str());
            out.byte(b'{');
            out.varint(map.iter().filter(kept).count());
            sorted_entries(map.iter().filter(kept), |key, value| {
                out.field(key.as_bytes());
                out.value(value);
            });
        }
        other => out.value(other),
    }
    out.finish()
}

/// Calls `f` on `entries` in key order. serde_json's map iterates in key order already
/// (a `BTreeMap`); with its `preserve_order` feature (switched on by any crate in the
/// build) it keeps the body's order, and the entries are sorted here instead.
fn sorted_entries<'a, I>(entries: I, mut f: impl FnMut(&'a str, &'a Value))
where
    I: Iterator<Item = (&'a String, &'a Value)> + Clone,
{
    if entries.clone().map(|(k, _)| k).is_sorted() {
        for (key, value) in entries {
            f(key, value);
        }
        return;
    }
    let mut entries: Vec<(&String, &Value)> = entries.collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (key, value) in entries {
        f(key, value);
    }
}

/// Body fields that never change the answer (`model` is hashed on its own). A `match`
/// rather than a list: it compares by length first.
fn ignored(key: &str) -> bool {
    matches!(
        key,
        "model" | "stream" | "stream_options" | "user" | "metadata" | "store"
    )
}

fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "openai.chat",
        Endpoint::Embeddings => "openai.embeddings",
        Endpoint::Messages => "anthropic.messages",
    }
}

/// The caller's credential (the first present header, name and value), or `public`.
/// It goes into the key's SHA-256 with everything else, so it is never kept in clear.
fn credential_scope(out: &mut Canonical, req: &Request<Body>) {
    let headers = req.headers();
    let credential = [AUTHORIZATION.as_str(), "x-api-key", "x-goog-api-key"]
        .into_iter()
        .find_map(|name| headers.get(name).map(|v| (name, v)));
    match credential {
        Some((name, value)) => {
            out.put(b"credential\0");
            out.field(name.as_bytes());
            out.field(value.as_bytes());
        }
        None => out.put(b"public\0"),
    }
}

/// The canonical form, written into SHA-256 through a small buffer: the form is made of
/// many short pieces (tags, lengths, keys), and one `update` per piece costs more than
/// the hashing itself.
///
/// The encoding is prefix-free, so no two inputs share a form: each value starts with
/// a tag byte; strings and keys carry their length, arrays and objects their count, as
/// LEB128 varints (one byte below 128).
struct Canonical {
    sha: Sha256,
    buf: [u8; Canonical::BUF],
    len: usize,
}

impl Canonical {
    /// A multiple of SHA-256's 64-byte block, so full flushes skip its own buffer.
    const BUF: usize = 256;

    fn new() -> Self {
        Canonical {
            sha: Sha256::new(),
            buf: [0; Canonical::BUF],
            len: 0,
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() > Canonical::BUF - self.len {
            self.flush();
            if bytes.len() >= Canonical::BUF {
                // A long string (a prompt): straight to the hasher.
                self.sha.update(bytes);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// One tag byte.
    #[inline]
    fn byte(&mut self, b: u8) {
        if self.len == Canonical::BUF {
            self.flush();
        }
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn flush(&mut self) {
        self.sha.update(&self.buf[..self.len]);
        self.len = 0;
    }

    fn varint(&mut self, mut n: usize) {
        if n < 0x80 {
            return self.byte(n as u8);
        }
        let mut bytes = [0u8; 10];
        let mut i = 0;
        while n >= 0x80 {
            bytes[i] = (n as u8) | 0x80;
            n >>= 7;
            i += 1;
        }
        bytes[i] = n as u8;
        self.put(&bytes[..=i]);
    }

    /// A length-prefixed byte string.
    fn field(&mut self, bytes: &[u8]) {
        self.varint(bytes.len());
        self.put(bytes);
    }

    /// A JSON value with sorted object keys and numbers by value. Nesting depth is
    /// bounded by the JSON parser (serde_json refuses more than 128 levels).
    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.byte(b'n'),
            Value::Bool(b) => self.byte(if *b { b't' } else { b'f' }),
            Value::Number(n) => {
                // Integers that a double holds exactly hash as that double, so `0` and
                // `0.0` agree; larger integers keep their exact value.
                match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) if i.unsigned_abs() < (1 << 53) => {
                        self.byte(b'#');
                        self.put(&(i as f64).to_bits().to_le_bytes());
                    }
                    (Some(i), _, _) => {
                        self.byte(b'i');
                        self.put(&i.to_le_bytes());
                    }
                    (None, Some(u), _) => {
                        self.byte(b'u');
                        self.put(&u.to_le_bytes());
                    }
                    (None, None, Some(f)) => {
                        // -0.0 and 0.0 are the same number.
                        let f = if f == 0.0 { 0.0 } else { f };
                        self.byte(b'#');
                        self.put(&f.to_bits().to_le_bytes());
                    }
                    (None, None, None) => {
                        self.byte(b'd');
                        self.field(n.to_string().as_bytes());
                    }
                }
            }
            Value::String(s) => {
                self.byte(b's');
                self.field(s.as_bytes());
            }
            Value::Array(items) => {
                self.byte(b'[');
                self.varint(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => {
                self.byte(b'{');
                self.varint(map.len());
                sorted_entries(map.iter(), |key, value| {
                    self.field(key.as_bytes());
                    self.value(value);
                });
            }
        }
    }

    fn finish(mut self) -> [u8; 32] {
        self.flush();
        self.sha.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn key_of(body: &str, auth: Option<&str>) -> CacheKey {
        let path = "/v1/chat/completions";
        let llm = LlmRequest::parse(
            Endpoint::from_path(path).unwrap(),
            Bytes::copy_from_slice(body.as_bytes()),
        )
        .unwrap();
        let mut req = Request::post(path);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let req = req.body(Body::empty()).unwrap();
        DefaultMakeCacheKey::new()
            .make_cache_key(&req, &llm)
            .unwrap()
    }

    const BASE: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"tools":[{"type":"function","function":{"name":"f","parameters":{"a":1,"b":2}}}]}"#;

    #[test]
    fn whitespace_key_order_and_number_form_do_not_matter() {
        let reordered = r#"{
            "temperature": 0.0,
            "tools": [{"function": {"parameters": {"b": 2, "a": 1}, "name": "f"}, "type": "function"}],
            "messages": [ {"content": "hi", "role": "user"} ],
            "model": "m",
            "user": "someone", "stream_options": null
        }"#;
        assert_eq!(key_of(BASE, None), key_of(reordered, None));
    }

    #[test]
    fn answer_changing_fields_change_the_key() {
        let base = key_of(BASE, None);
        for changed in [
            BASE.replace("\"hi\"", "\"hello\""),
            BASE.replace("\"temperature\":0", "\"temperature\":0.2"),
            BASE.replace("\"model\":\"m\"", "\"model\":\"m2\""),
            BASE.replace("\"a\":1", "\"a\":2"),
            BASE.replace("}]}", "}],\"seed\":1}"),
            BASE.replace("}]}", "}],\"logprobs\":true}"),
            BASE.replace("}]}", "}],\"stream\":true}"),
        ] {
            assert_ne!(key_of(&changed, None), base, "{changed}");
        }
        // include_usage changes the stream's shape, so the key.
        let stream = BASE.replace("}]}", "}],\"stream\":true}");
        let usage = BASE.replace(
            "}]}",
            "}],\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        );
        assert_ne!(key_of(&stream, None), key_of(&usage, None));
    }

    #[test]
    fn tenants_never_share_a_key() {
        let public = key_of(BASE, None);
        let a = key_of(BASE, Some("Bearer sk-a"));
        let b = key_of(BASE, Some("Bearer sk-b"));
        assert!(public != a && a != b && public != b);
        assert_eq!(a, key_of(BASE, Some("Bearer sk-a")));

        // An explicit scope wins over the credential.
        let llm = LlmRequest::parse(
            Endpoint::ChatCompletions,
            Bytes::from_static(BASE.as_bytes()),
        )
        .unwrap();
        let scoped = |scope: &str, auth: &str| {
            let mut req = Request::post("/v1/chat/completions")
                .header("authorization", auth)
                .body(Body::empty())
                .unwrap();
            req.extensions_mut().insert(CacheScope::new(scope));
            DefaultMakeCacheKey::new()
                .make_cache_key(&req, &llm)
                .unwrap()
        };
        assert_eq!(scoped("team-1", "Bearer x"), scoped("team-1", "Bearer y"));
        assert_ne!(scoped("team-1", "Bearer x"), scoped("team-2", "Bearer x"));
    }

    #[cfg(feature = "auth")]
    #[test]
    fn the_authenticated_key_is_the_tenant() {
        let llm = LlmRequest::parse(
            Endpoint::ChatCompletions,
            Bytes::from_static(BASE.as_bytes()),
        )
        .unwrap();
        let as_key = |key_id: &str, header: (&str, &str)| {
            let mut req = Request::post("/v1/chat/completions")
                .header(header.0, header.1)
                .body(Body::empty())
                .unwrap();
            req.extensions_mut()
                .insert(crate::auth::Principal::new(key_id));
            DefaultMakeCacheKey::new()
                .make_cache_key(&req, &llm)
                .unwrap()
        };
        // The same key through either header shares entries; another key never does.
        assert_eq!(
            as_key("k1", ("authorization", "Bearer tg-a")),
            as_key("k1", ("x-api-key", "tg-a"))
        );
        assert_ne!(
            as_key("k1", ("authorization", "Bearer tg-a")),
            as_key("k2", ("authorization", "Bearer tg-a"))
        );
    }

    #[test]
    fn long_strings_and_unsorted_maps() {
        // Strings longer than the canonical buffer go straight to the hasher.
        let long = "x".repeat(300);
        let body = BASE.replace("\"hi\"", &format!("\"{long}\""));
        assert_eq!(key_of(&body, None), key_of(&body, None));
        let longer = BASE.replace("\"hi\"", &format!("\"{long}y\""));
        assert_ne!(key_of(&body, None), key_of(&longer, None));

        // Entries in body order (serde_json's `preserve_order`) come out sorted.
        let (a, b, c) = ("a".to_string(), "b".to_string(), "c".to_string());
        let (one, two) = (Value::from(1), Value::from(2));
        let order = |entries: Vec<(&String, &Value)>| {
            let mut seen = Vec::new();
            sorted_entries(entries.into_iter(), |k, v| {
                seen.push((k.to_string(), v.clone()))
            });
            seen
        };
        let sorted = order(vec![(&a, &one), (&b, &two), (&c, &one)]);
        assert_eq!(order(vec![(&c, &one), (&a, &one), (&b, &two)]), sorted);
        assert_eq!(sorted[0].0, "a");
    }

    #[test]
    fn hex_form() {
        let key = CacheKey::from_bytes([0xab; 32]);
        assert_eq!(key.to_hex(), "ab".repeat(32));
        assert_eq!(key.as_bytes(), &[0xab; 32]);
    }
}
