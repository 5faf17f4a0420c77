//! JWT: HS256, RS256 and ES256 tokens, time claims, wrong keys, algorithm confusion,
//! `alg: none`, JWKS keys by `kid`, claims to principal, and model globs through the
//! layer.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tollgate::auth::{
    AuthLayer, JwtKey, JwtValidator, KeyAuthenticator, KeySecret, KeySpec, Keys, MemoryKeyStore,
    Principal, Rejection, Role,
};
use tollgate::testing::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

use super::{chat, json as body_json};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const RSA_A_KEY: &str = include_str!("fixtures/rsa_a.key.pem");
const RSA_A_PUB: &str = include_str!("fixtures/rsa_a.pub.pem");
const RSA_B_KEY: &str = include_str!("fixtures/rsa_b.key.pem");
const EC_KEY: &str = include_str!("fixtures/ec.key.pem");
const EC_PUB: &str = include_str!("fixtures/ec.pub.pem");
const JWKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/auth/fixtures/jwks.json");

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 600, "iat": now() })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap()
}

fn hs_validator() -> JwtValidator {
    JwtValidator::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .build()
        .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    // base64url without padding, enough for the hand-made tokens below.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[track_caller]
fn assert_refused(result: Result<Principal, Rejection>, why: &str) {
    let rejection = result.expect_err(why);
    let res = rejection.to_response(tollgate::Dialect::OpenAi);
    assert_eq!(res.status(), 401, "{why}: {rejection}");
}

#[test]
fn hs256_claims_map_to_the_principal() {
    let validator = JwtValidator::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .issuer("https://id.example.com")
        .team_claim("org")
        .role_claim("https://example.com/role")
        .models_claim("allowed")
        .build()
        .unwrap();
    let mut c = claims("alice");
    c["iss"] = json!("https://id.example.com");
    c["org"] = json!("search");
    c["https://example.com/role"] = json!("admin");
    c["allowed"] = json!(["mock/*", "gpt-4o-mini"]);
    let p = validator.validate(&hs(&c)).unwrap();
    assert_eq!(&*p.key_id, "alice");
    assert_eq!(p.team.as_deref(), Some("search"));
    assert_eq!(p.role, Role::Admin);
    assert!(p.allows_model("mock/echo") && p.allows_model("gpt-4o-mini"));
    assert!(!p.allows_model("gpt-4o"));
    assert_eq!(p.metadata["iss"], "https://id.example.com");

    // Defaults: no team, developer, every model; a prefix on the key id.
    let validator = JwtValidator::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .subject_prefix("jwt:")
        .build()
        .unwrap();
    let p = validator.validate(&hs(&claims("bob"))).unwrap();
    assert_eq!(&*p.key_id, "jwt:bob");
    assert_eq!((p.team.clone(), p.role), (None, Role::Developer));
    assert!(p.models.is_empty() && p.allows_model("anything"));
    let p = JwtValidator::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .default_role(Role::Viewer)
        .build()
        .unwrap()
        .validate(&hs(&claims("carol")))
        .unwrap();
    assert_eq!(p.role, Role::Viewer);
}

#[test]
fn rs256_and_es256_tokens_verify_with_pem_public_keys() {
    let validator = JwtValidator::builder()
        .key(JwtKey::rs256_pem(RSA_A_PUB).unwrap())
        .key(JwtKey::es256_pem(EC_PUB).unwrap())
        .build()
        .unwrap();
    let rs = sign(Algorithm::RS256, None, &claims("rs"), &rsa(RSA_A_KEY));
    let es = sign(Algorithm::ES256, None, &claims("es"), &ec());
    assert_eq!(&*validator.validate(&rs).unwrap().key_id, "rs");
    assert_eq!(&*validator.validate(&es).unwrap().key_id, "es");
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused_within_a_small_leeway() {
    let v = hs_validator();
    let mut c = claims("a");
    c["exp"] = json!(now() - 120);
    assert_refused(v.validate(&hs(&c)), "expired two minutes ago");
    c["exp"] = json!(now() - 5);
    assert!(v.validate(&hs(&c)).is_ok(), "within the 30 s leeway");

    let mut c = claims("a");
    c["nbf"] = json!(now() + 120);
    assert_refused(v.validate(&hs(&c)), "valid only in two minutes");
    c["nbf"] = json!(now() + 5);
    assert!(v.validate(&hs(&c)).is_ok(), "within the leeway");
    // A time claim of the wrong type is not skipped (GHSA-h395-gr6q-cpjc).
    c["nbf"] = json!((now() + 3600).to_string());
    assert_refused(v.validate(&hs(&c)), "nbf as a string");

    // `exp` and `sub` are required.
    assert_refused(v.validate(&hs(&json!({ "sub": "a" }))), "no exp");
    assert_refused(v.validate(&hs(&json!({ "exp": now() + 60 }))), "no sub");
}

#[test]
fn tokens_signed_with_another_key_are_refused() {
    let other = EncodingKey::from_secret(b"another secret, also 32 bytes long....");
    assert_refused(
        hs_validator().validate(&sign(Algorithm::HS256, None, &claims("a"), &other)),
        "other HS256 secret",
    );
    let validator = JwtValidator::builder()
        .key(JwtKey::rs256_pem(RSA_A_PUB).unwrap())
        .build()
        .unwrap();
    let token = sign(Algorithm::RS256, None, &claims("a"), &rsa(RSA_B_KEY));
    assert_refused(validator.validate(&token), "signed by RSA key B");
    // A flipped signature byte.
    let mut token = sign(Algorithm::RS256, None, &claims("a"), &rsa(RSA_A_KEY));
    let last = token.pop().unwrap();
    token.push(if last == 'A' { 'B' } else { 'A' });
    assert_refused(validator.validate(&token), "tampered signature");
}

#[test]
fn algorithm_confusion_and_unconfigured_algorithms_are_refused() {
    let validator = JwtValidator::builder()
        .key(JwtKey::rs256_pem(RSA_A_PUB).unwrap())
        .build()
        .unwrap();
    // The classic attack: HMAC keyed with the RSA public key the server trusts.
    let forged = sign(
        Algorithm::HS256,
        None,
        &claims("mallory"),
        &EncodingKey::from_secret(RSA_A_PUB.as_bytes()),
    );
    assert_refused(
        validator.validate(&forged),
        "HS256 keyed with the RSA public key",
    );
    // Even when an HS256 key is configured too, the RSA key never serves as a secret.
    let both = JwtValidator::builder()
        .key(JwtKey::rs256_pem(RSA_A_PUB).unwrap())
        .key(JwtKey::hs256(SECRET).unwrap())
        .build()
        .unwrap();
    assert_refused(
        both.validate(&forged),
        "HS256 keyed with the RSA public key",
    );
    // RS384 with a configured RSA key: the algorithm is not accepted.
    let rs384 = sign(Algorithm::RS384, None, &claims("a"), &rsa(RSA_A_KEY));
    assert_refused(validator.validate(&rs384), "RS384");
    let hs512 = sign(
        Algorithm::HS512,
        None,
        &claims("a"),
        &EncodingKey::from_secret(SECRET),
    );
    assert_refused(hs_validator().validate(&hs512), "HS512");
}

#[test]
fn alg_none_and_malformed_tokens_are_refused() {
    let v = hs_validator();
    let payload = b64(claims("root").to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"typ":"JWT"}"#,
    ] {
        let header = b64(header.as_bytes());
        assert_refused(v.validate(&format!("{header}.{payload}.")), header.as_str());
        assert_refused(v.validate(&format!("{header}.{payload}")), "two parts");
    }
    let token = hs(&claims("a"));
    for bad in [
        "",
        "a.b.c",
        "..",
        "eyJhbGciOiJIUzI1NiJ9..",
        &token[..token.len() - 10],
        &format!("{token}.extra"),
        &format!("{}x", "a.".repeat(5000)),
    ] {
        assert_refused(v.validate(bad), "malformed");
    }
}

#[test]
fn claims_of_the_wrong_shape_are_refused() {
    let v = hs_validator();
    for (name, value) in [
        ("role", json!("superuser")),
        ("role", json!(1)),
        ("team", json!(42)),
        ("models", json!([1, 2])),
        ("models", json!({ "a": 1 })),
        ("sub", json!(7)),
        ("sub", json!("")),
    ] {
        let mut c = claims("a");
        c[name] = value.clone();
        assert_refused(v.validate(&hs(&c)), &format!("{name} = {value}"));
    }
    let mut c = claims("a");
    c["models"] = json!("mock/*");
    let p = v.validate(&hs(&c)).unwrap();
    assert!(p.allows_model("mock/echo") && !p.allows_model("gpt-4o"));
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let v = JwtValidator::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .issuer("https://id.example.com")
        .audience("tollgate")
        .build()
        .unwrap();
    let mut c = claims("a");
    c["iss"] = json!("https://id.example.com");
    c["aud"] = json!(["other", "tollgate"]);
    assert!(v.validate(&hs(&c)).is_ok());
    c["aud"] = json!("other");
    assert_refused(v.validate(&hs(&c)), "wrong audience");
    c.as_object_mut().unwrap().remove("aud");
    assert_refused(v.validate(&hs(&c)), "no audience");
    c["aud"] = json!("tollgate");
    c["iss"] = json!("https://evil.example.com");
    assert_refused(v.validate(&hs(&c)), "wrong issuer");
    // Without an audience configured, `aud` is not checked.
    c["iss"] = json!("x");
    assert!(hs_validator().validate(&hs(&c)).is_ok());
}

#[test]
fn jwks_keys_are_selected_by_kid() {
    let v = JwtValidator::builder()
        .jwks_file(JWKS)
        .unwrap()
        .build()
        .unwrap();
    let mut kids: Vec<_> = format!("{v:?}")
        .matches("key-")
        .map(str::to_owned)
        .collect();
    kids.dedup();
    assert!(!kids.is_empty());
    let b = rsa(RSA_B_KEY);
    let token = sign(Algorithm::RS256, Some("key-b"), &claims("b"), &b);
    assert_eq!(&*v.validate(&token).unwrap().key_id, "b");
    let token = sign(
        Algorithm::RS256,
        Some("key-a"),
        &claims("a"),
        &rsa(RSA_A_KEY),
    );
    assert_eq!(&*v.validate(&token).unwrap().key_id, "a");
    let token = sign(Algorithm::ES256, Some("key-ec"), &claims("e"), &ec());
    assert_eq!(&*v.validate(&token).unwrap().key_id, "e");
    // Key B's signature under key A's kid, an unknown kid, and the EC kid with RS256.
    assert_refused(
        v.validate(&sign(Algorithm::RS256, Some("key-a"), &claims("x"), &b)),
        "wrong kid",
    );
    assert_refused(
        v.validate(&sign(Algorithm::RS256, Some("key-z"), &claims("x"), &b)),
        "unknown kid",
    );
    assert_refused(
        v.validate(&sign(Algorithm::RS256, Some("key-ec"), &claims("x"), &b)),
        "kid of another algorithm",
    );
    // Without a kid, every key of the algorithm is tried.
    assert!(v
        .validate(&sign(Algorithm::RS256, None, &claims("b"), &b))
        .is_ok());
}

#[test]
fn bad_configuration_is_an_error_naming_the_problem() {
    let short = JwtKey::hs256(b"short").unwrap_err().to_string();
    assert!(short.contains("HS256") && short.contains("32"), "{short}");
    assert!(JwtKey::rs256_pem("not a pem").is_err());
    assert!(
        JwtKey::es256_pem(RSA_A_PUB).is_err(),
        "an RSA key is no P-256 key"
    );
    let none = JwtValidator::builder().build().unwrap_err().to_string();
    assert!(none.contains("no key"), "{none}");
    assert!(JwtValidator::builder().jwks_json(b"{}").is_err());
    assert!(JwtValidator::builder()
        .jwks_json(br#"{"keys":[{"kty":"OKP"}]}"#)
        .is_err());
    let missing = JwtValidator::builder()
        .jwks_file("/nonexistent/jwks.json")
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/jwks.json"),
        "{missing}"
    );
}

#[test]
fn debug_output_holds_no_key_material() {
    let v = JwtValidator::builder()
        .key(JwtKey::hs256(SECRET).unwrap().with_kid("shared"))
        .key(JwtKey::rs256_pem(RSA_A_PUB).unwrap())
        .build()
        .unwrap();
    let auth = KeyAuthenticator::new(Keys::new(MemoryKeyStore::new())).with_jwt(v.clone());
    for debug in [format!("{v:?}"), format!("{auth:?}")] {
        assert!(
            debug.contains("shared") && debug.contains("Hs256"),
            "{debug}"
        );
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        assert!(
            !debug.contains(&RSA_A_PUB.lines().nth(1).unwrap()[..20]),
            "{debug}"
        );
        for b in SECRET.chunks(8) {
            assert!(!debug.contains(&format!("{b:?}")[1..12]), "{debug}");
        }
    }
}

#[tokio::test]
async fn layer_answers_401_and_403_in_the_clients_dialect() {
    let validator = JwtValidator::builder()
        .key(JwtKey::rs256_pem(RSA_A_PUB).unwrap())
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::jwt(validator))
        .service(MockProvider::new());
    let mut c = claims("alice");
    c["models"] = json!(["mock/*"]);
    c["groups"] = json!(["engineering", "search-relevance", "llm-platform", "on-call"]);
    let token = sign(Algorithm::RS256, None, &c, &rsa(RSA_A_KEY));
    assert!(
        token.len() > 512,
        "an RS256 token is longer than a virtual key"
    );
    let bearer = format!("Bearer {token}");

    let res = svc
        .clone()
        .oneshot(chat(
            "/v1/chat/completions",
            "mock/echo",
            &[("authorization", &bearer)],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let res = svc
        .clone()
        .oneshot(chat(
            "/v1/chat/completions",
            "gpt-4o",
            &[("authorization", &bearer)],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(body_json(res).await["error"]["code"], "permission_denied");
    let res = svc
        .clone()
        .oneshot(chat("/v1/messages", "claude-x", &[("x-api-key", &token)]))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(body_json(res).await["error"]["type"], "permission_error");

    c["exp"] = json!(now() - 3600);
    let expired = sign(Algorithm::RS256, None, &c, &rsa(RSA_A_KEY));
    let res = svc
        .clone()
        .oneshot(chat(
            "/v1/chat/completions",
            "mock/echo",
            &[("authorization", &format!("Bearer {expired}"))],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(body_json(res).await["error"]["code"], "invalid_api_key");
    let res = svc
        .oneshot(chat(
            "/v1/messages",
            "mock/echo",
            &[("x-api-key", &expired)],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        body_json(res).await["error"]["type"],
        "authentication_error"
    );
}

#[tokio::test]
async fn key_authenticator_accepts_virtual_keys_master_key_and_jwts() {
    let keys = Keys::new(MemoryKeyStore::new());
    let mut spec = KeySpec::default();
    spec.team = Some("search".into());
    let created = keys.create(spec).await.unwrap();
    let master = KeySecret::from_plaintext("master-secret-for-the-test");
    let auth = KeyAuthenticator::new(keys)
        .master_key(&master)
        .with_jwt(hs_validator());
    let headers = |value: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", format!("Bearer {value}").parse().unwrap());
        h
    };
    let p = auth
        .authenticate_headers(&headers(created.secret.expose()))
        .await
        .unwrap();
    assert_eq!(&*p.key_id, created.record.id.as_str());
    let p = auth
        .authenticate_headers(&headers(master.expose()))
        .await
        .unwrap();
    assert_eq!((&*p.key_id, p.role), ("master", Role::Admin));
    let p = auth
        .authenticate_headers(&headers(&hs(&claims("jwt-user"))))
        .await
        .unwrap();
    assert_eq!(&*p.key_id, "jwt-user");
    for bad in ["tg-unknown", "a.b.c", &"x".repeat(600)] {
        let err = auth.authenticate_headers(&headers(bad)).await.unwrap_err();
        assert_eq!(
            err.to_response(tollgate::Dialect::OpenAi).status(),
            401,
            "{bad}"
        );
    }
}

/// A log sink for `tracing` in this thread.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_hold_no_token_and_no_secret() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let good = hs(&claims("alice"));
    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 3600);
    let expired = hs(&expired);
    let other = sign(
        Algorithm::HS256,
        None,
        &claims("a"),
        &EncodingKey::from_secret(b"another secret, also 32 bytes long...."),
    );
    tracing::subscriber::with_default(subscriber, || {
        let v = hs_validator();
        assert!(v.validate(&good).is_ok());
        for bad in [&expired, &other, "not.a.jwt"] {
            assert!(v.validate(bad).is_err());
        }
        // A JWKS with a skipped key logs a warning naming the kid only.
        let jwks = r#"{"keys":[{"kty":"oct","kid":"sym","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
            {"kty":"RSA","kid":"r","alg":"RS512","n":"AQAB","e":"AQAB"}]}"#;
        assert!(JwtValidator::builder().jwks_json(jwks.as_bytes()).is_err());
    });
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("JWT refused"), "{logs}");
    assert!(logs.contains("key skipped"), "{logs}");
    for secret in [
        &good[..],
        &expired[..],
        &other[..],
        good.split('.').nth(2).unwrap(),
        std::str::from_utf8(SECRET).unwrap(),
        "c2VjcmV0LXNlY3JldC1zZWNyZXQ",
    ] {
        assert!(!logs.contains(secret), "a secret in the logs: {logs}");
    }
}
