//! Authentication cost per request: a cached virtual-key lookup with 1,000,000 keys in
//! a `MemoryKeyStore` (hash, cache hit, principal clone), the same through
//! `KeyAuthenticator` from the request headers, an unknown key (negative cache), and JWT
//! verification (HS256, RS256, ES256) from the headers.
//! Run: `cargo bench --bench auth --features auth,jwt`.

use std::hint::black_box;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use tollgate::auth::{
    JwtKey, JwtValidator, KeyAuthenticator, KeyHash, KeyRecord, KeySecret, Keys, MemoryKeyStore,
};

const KEYS: usize = 1_000_000;
/// Keys looked up in turn: more than a CPU cache holds, fewer than the cache capacity.
const HOT: usize = 4096;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-bench-secret";

fn secret(i: usize) -> KeySecret {
    KeySecret::from_plaintext(format!("tg-bench{i:035}"))
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers
}

fn keys(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut store = MemoryKeyStore::new();
    for i in 0..KEYS {
        let secret = secret(i);
        store = store.with_record(KeyRecord::new(secret.hash(), secret.visible_prefix()).unwrap());
    }
    assert_eq!(store.len(), KEYS);
    eprintln!("auth bench: {KEYS} keys stored in {:?}", started.elapsed());
    let keys = Keys::new(store);
    // Spread over the whole store; every one is read once here to warm the cache.
    let hot: Vec<String> = (0..HOT)
        .map(|i| secret(i * (KEYS / HOT)).expose().to_owned())
        .collect();
    rt.block_on(async {
        for key in &hot {
            keys.verify(key).await.unwrap();
        }
    });
    let headers: Vec<HeaderMap> = hot.iter().map(|k| bearer(k)).collect();
    let authenticator = KeyAuthenticator::new(keys.clone());
    let before = keys.store_lookups();
    let mut calls = 0u64;

    let mut group = c.benchmark_group("auth");
    let mut i = 0;
    group.bench_function("block_on of a ready future (in every row below)", |b| {
        b.iter(|| black_box(rt.block_on(async { black_box(1) })))
    });
    group.bench_function("SHA-256 of a key (part of every lookup)", |b| {
        b.iter(|| {
            i = (i + 1) % HOT;
            black_box(KeyHash::of(&hot[i]))
        })
    });
    group.bench_function("virtual key, cached (1M keys)", |b| {
        b.iter(|| {
            i = (i + 1) % HOT;
            calls += 1;
            black_box(rt.block_on(keys.verify(&hot[i])).unwrap());
        })
    });
    group.bench_function("virtual key from headers, cached (1M keys)", |b| {
        b.iter(|| {
            i = (i + 1) % HOT;
            calls += 1;
            black_box(
                rt.block_on(authenticator.authenticate_headers(&headers[i]))
                    .unwrap(),
            );
        })
    });
    let unknown = "tg-unknown000000000000000000000000000000000";
    group.bench_function("unknown key, negative cache", |b| {
        b.iter(|| black_box(rt.block_on(keys.verify(unknown)).unwrap_err()))
    });
    group.finish();
    eprintln!(
        "auth bench: {calls} cached lookups, {} store queries (TTL refreshes)",
        keys.store_lookups() - before
    );
}

fn jwt(c: &mut Criterion) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "sub": "user-1234", "exp": now + 3600, "iat": now,
        "team": "search", "role": "developer", "models": ["mock/*", "gpt-4o*"],
    });
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/auth/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let cases = [
        (
            "HS256",
            JwtKey::hs256(SECRET).unwrap(),
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
        ),
        (
            "RS256",
            JwtKey::rs256_pem(fixture("rsa_a.pub.pem")).unwrap(),
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture("rsa_a.key.pem")).unwrap(),
        ),
        (
            "ES256",
            JwtKey::es256_pem(fixture("ec.pub.pem")).unwrap(),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&fixture("ec.key.pem")).unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("auth");
    for (name, key, alg, signing) in cases {
        let validator = JwtValidator::builder().key(key).build().unwrap();
        let token = encode(&Header::new(alg), &claims, &signing).unwrap();
        let headers = bearer(&token);
        validator.authenticate_headers(&headers).unwrap();
        group.bench_function(format!("JWT {name} from headers"), |b| {
            b.iter(|| black_box(validator.authenticate_headers(&headers).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, keys, jwt);
criterion_main!(benches);
