//! Virtual key secrets: generation, hashing, constant-time comparison.
//!
//! A key is `tg-` followed by 43 characters drawn uniformly from the 62 ASCII letters
//! and digits (log2(62) × 43 ≈ 256.03 bits from the operating system's CSPRNG). Only
//! its SHA-256 hash and a short visible prefix are stored. A plain hash (no salt, no
//! slow KDF) is right for a secret with this much entropy: there is no dictionary to
//! attack, and the gateway must verify a key in well under a microsecond.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every key this gateway issues.
pub const KEY_PREFIX: &str = "tg-";

/// Random characters after [`KEY_PREFIX`].
const RANDOM_CHARS: usize = 43;

/// Characters of the key kept in clear (with `tg-`) to recognise it in a list.
const VISIBLE_CHARS: usize = 8;

/// The longest credential the layer will hash; longer ones are refused unread.
pub(crate) const MAX_KEY_LEN: usize = 512;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A plaintext key, shown once when it is created or rotated.
///
/// Its `Debug` and `Display` never print the secret; read it with
/// [`expose`](KeySecret::expose) to hand it to the client, and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret(String);

impl KeySecret {
    /// A fresh key from the operating system's CSPRNG.
    ///
    /// Fails only if the operating system has no random source.
    pub fn generate() -> Result<KeySecret, RandomUnavailable> {
        let mut key = String::with_capacity(KEY_PREFIX.len() + RANDOM_CHARS);
        key.push_str(KEY_PREFIX);
        let mut buf = [0u8; 64];
        while key.len() < KEY_PREFIX.len() + RANDOM_CHARS {
            getrandom::fill(&mut buf).map_err(|_| RandomUnavailable(()))?;
            // Rejection sampling: 248 = 4 × 62, so `b % 62` is uniform for b < 248.
            for b in buf.iter().copied().filter(|&b| b < 248) {
                if key.len() == KEY_PREFIX.len() + RANDOM_CHARS {
                    break;
                }
                key.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
        Ok(KeySecret(key))
    }

    /// Wraps a key given in configuration (for the in-memory store).
    pub fn from_plaintext(key: impl Into<String>) -> KeySecret {
        KeySecret(key.into())
    }

    /// The plaintext. Show it to the client once; never log or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 hash stored in place of the key.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }

    /// The visible prefix stored with the hash (`tg-` and 8 characters), to tell keys
    /// apart in a list.
    pub fn visible_prefix(&self) -> String {
        visible_prefix(&self.0)
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySecret({}…)", visible_prefix(&self.0))
    }
}

pub(crate) fn visible_prefix(key: &str) -> String {
    let keep = if key.starts_with(KEY_PREFIX) {
        KEY_PREFIX.len() + VISIBLE_CHARS
    } else {
        // A configured key of another shape: show less of it.
        4
    };
    // Only whole characters, and never the whole key.
    let max = key.len().saturating_sub(8).min(keep);
    let end = (0..=max)
        .rev()
        .find(|&i| key.is_char_boundary(i))
        .unwrap_or(0);
    key[..end].to_owned()
}

/// The operating system's random source failed (the key was not created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomUnavailable(());

impl fmt::Display for RandomUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("the operating system's random number generator is unavailable")
    }
}

impl std::error::Error for RandomUnavailable {}

pub(crate) fn random_unavailable() -> RandomUnavailable {
    RandomUnavailable(())
}

/// The SHA-256 hash of a key: what stores keep and look keys up by.
///
/// Equality is constant-time. `Debug` prints no digits.
#[derive(Clone, Copy)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of a plaintext key.
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// A hash from its 32 bytes (as a store reads it back).
    pub const fn from_bytes(bytes: [u8; 32]) -> KeyHash {
        KeyHash(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, as the SQL stores keep it.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<KeyHash> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(KeyHash(out))
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for KeyHash {}

// Consistent with `PartialEq`: equal hashes have equal bytes.
impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// Compares two secrets in constant time: both are hashed first, so neither their
/// contents nor their lengths leak.
#[cfg(test)]
pub(crate) fn secrets_match(given: &str, expected: &KeyHash) -> bool {
    KeyHash::of(given) == *expected
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_keys_have_the_shape_and_entropy() {
        let mut seen = HashSet::new();
        let mut counts = [0u32; 62];
        for _ in 0..2000 {
            let key = KeySecret::generate().unwrap();
            let text = key.expose();
            assert!(text.starts_with("tg-"));
            assert_eq!(text.len(), 46);
            for c in text[3..].bytes() {
                let i = ALPHABET.iter().position(|&a| a == c).expect("alphabet");
                counts[i] += 1;
            }
            assert!(seen.insert(text.to_owned()), "duplicate key");
        }
        // 86,000 draws over 62 symbols: each expected ~1387; a broken sampler is far off.
        assert!(
            counts.iter().all(|&n| (1150..1650).contains(&n)),
            "{counts:?}"
        );
        // At least 256 bits.
        assert!(43.0 * 62f64.log2() >= 256.0);
    }

    #[test]
    fn debug_and_prefix_never_show_the_secret() {
        let key = KeySecret::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains(key.expose()));
        assert!(!debug.contains(&key.expose()[11..]));
        assert_eq!(key.visible_prefix().len(), 11);
        assert!(key.expose().starts_with(&key.visible_prefix()));
        assert_eq!(format!("{:?}", key.hash()), "KeyHash(..)");
        // Short or odd configured keys keep most of themselves hidden.
        assert_eq!(visible_prefix("short"), "");
        assert_eq!(visible_prefix("sk-configured-key-1"), "sk-c");
        assert_eq!(visible_prefix("ééééééééééé"), "éé");
    }

    #[test]
    fn hashes_round_trip_and_compare() {
        let key = KeySecret::from_plaintext("tg-abc");
        let hash = key.hash();
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(
            KeyHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(secrets_match("tg-abc", &hash));
        assert!(!secrets_match("tg-abd", &hash));
        assert!(!secrets_match("", &hash));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
    }
}
