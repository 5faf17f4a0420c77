//! Removing credentials from text a provider sends back.
//!
//! Providers echo keys in error messages ("Incorrect API key provided: sk-abc...").
//! Everything that leaves the gateway from an upstream error goes through
//! [`redact`] first.

/// Prefixes of well-known credential formats.
const KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "tg-", "AIza", "pk-", "rk-", "xai-", "gsk_", "key-", "Bearer ",
];

/// Shortest token after a prefix that is treated as a key (shorter ones are words).
const MIN_KEY_LEN: usize = 8;

/// Tokens at least this long made of key characters and containing digits are
/// treated as keys even without a known prefix.
const LONG_TOKEN_LEN: usize = 32;

const REDACTED: &str = "[redacted]";

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '.')
}

/// Replaces every credential-looking token in `text`, and every occurrence of the
/// given `secrets`, with `[redacted]`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, REDACTED);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while !rest.is_empty() {
        // "Bearer <token>": the one prefix with a separator in it.
        if let Some(after) = rest.strip_prefix("Bearer ") {
            let len = key_token_len(after);
            if len >= MIN_KEY_LEN {
                out.push_str("Bearer ");
                out.push_str(REDACTED);
                rest = &after[len..];
                continue;
            }
        }
        let token_len = key_token_len(rest);
        if token_len == 0 {
            let c = rest.chars().next().expect("rest is not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let token = &rest[..token_len];
        if looks_like_key(token) {
            out.push_str(REDACTED);
        } else {
            out.push_str(token);
        }
        rest = &rest[token_len..];
    }
    out
}

/// Length of the run of key characters at the start of `text`, without trailing dots
/// (a key at the end of a sentence keeps its full stop).
fn key_token_len(text: &str) -> usize {
    let run = text.find(|c: char| !is_key_char(c)).unwrap_or(text.len());
    text[..run].trim_end_matches('.').len()
}

fn looks_like_key(token: &str) -> bool {
    let prefixed = KEY_PREFIXES.iter().filter(|p| !p.ends_with(' ')).any(|p| {
        token
            .strip_prefix(p)
            .is_some_and(|rest| rest.len() >= MIN_KEY_LEN)
    });
    let long_random = token.len() >= LONG_TOKEN_LEN
        && token.chars().any(|c| c.is_ascii_digit())
        && token.chars().any(|c| c.is_ascii_alphabetic());
    prefixed || long_random
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_known_key_shapes() {
        let msg = "Incorrect API key provided: sk-proj-abc123XYZ***wxyz. You can find your API key at https://platform.openai.com/account/api-keys.";
        let out = redact(msg, &[]);
        assert!(!out.contains("abc123"), "{out}");
        assert!(
            out.contains("Incorrect API key provided: [redacted]."),
            "{out}"
        );
        assert!(out.contains("platform.openai.com"), "{out}");
    }

    #[test]
    fn redacts_bearer_google_and_exact_secrets() {
        let out = redact(
            "auth Bearer abcdefghijk failed for AIzaSyA1234567890 and my-secret-9",
            &["my-secret-9"],
        );
        assert_eq!(
            out,
            "auth Bearer [redacted] failed for [redacted] and [redacted]"
        );
    }

    #[test]
    fn leaves_prose_alone() {
        let msg = "The model `gpt-4o` does not exist or you do not have access to it.";
        assert_eq!(redact(msg, &[]), msg);
        assert_eq!(redact("sk-short", &[]), "sk-short");
        assert_eq!(redact("naïve ünïcode", &[]), "naïve ünïcode");
    }
}
