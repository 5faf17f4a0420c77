//! Prices per model and the cost of a response.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use super::Money;
use crate::outcome::Usage;

/// The price table shipped with the crate (`data/prices.json`).
const BUILTIN: &str = include_str!("../../data/prices.json");

/// Tokens in the "per million tokens" of a price.
const PER: i128 = 1_000_000;

/// Prices of one model, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Price {
    /// Input tokens that were not served from or written to a prompt cache.
    pub input: Money,
    /// Output tokens.
    pub output: Money,
    /// Input tokens read from the provider's prompt cache (default: `input`).
    #[serde(default)]
    pub cached_input: Option<Money>,
    /// Input tokens written to the provider's prompt cache (default: `input`).
    #[serde(default)]
    pub cache_write: Option<Money>,
}

impl Price {
    /// A price with the same rate for cached and uncached input.
    pub fn new(input: Money, output: Money) -> Price {
        Price {
            input,
            output,
            cached_input: None,
            cache_write: None,
        }
    }

    /// Sets the price of cached input tokens.
    pub fn with_cached_input(mut self, price: Money) -> Price {
        self.cached_input = Some(price);
        self
    }

    /// Sets the price of input tokens written to the cache.
    pub fn with_cache_write(mut self, price: Money) -> Price {
        self.cache_write = Some(price);
        self
    }

    /// The exact cost of `usage`, rounded half up to the nano-dollar once, at the end.
    ///
    /// `usage.prompt_tokens` includes the cached and cache-write tokens; each kind is
    /// billed at its own rate.
    pub fn cost(&self, usage: &Usage) -> Money {
        self.cost_of(
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.completion_tokens,
        )
    }

    /// The cost of the given token counts (see [`cost`](Price::cost)).
    pub fn cost_of(&self, prompt: u64, cached: u64, cache_write: u64, completion: u64) -> Money {
        let cached = cached.min(prompt);
        let cache_write = cache_write.min(prompt - cached);
        let uncached = prompt - cached - cache_write;
        let rate = |m: Money| i128::from(m.nanos());
        let per_million = i128::from(uncached) * rate(self.input)
            + i128::from(cached) * rate(self.cached_input.unwrap_or(self.input))
            + i128::from(cache_write) * rate(self.cache_write.unwrap_or(self.input))
            + i128::from(completion) * rate(self.output);
        let nanos = (per_million + PER / 2).div_euclid(PER);
        Money::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }
}

/// The price table could not be read.
#[derive(Debug)]
pub struct PriceTableError(String);

impl fmt::Display for PriceTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid price table: {}", self.0)
    }
}

impl std::error::Error for PriceTableError {}

#[derive(Deserialize)]
struct PriceFile {
    models: HashMap<String, Price>,
}

/// Prices by model name. See the [module docs](crate::metering).
///
/// A name is looked up, in order: exactly; against `prefix*` patterns, longest first;
/// without a `provider/` prefix; and as a dated or suffixed version of a listed model
/// (`gpt-4o-2024-08-06` is priced as `gpt-4o`, `gpt-4o-mini-2024-07-18` as
/// `gpt-4o-mini`: the longest listed name followed by `-` wins).
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// hashbrown's default hasher (foldhash), not SipHash: every request looks its
    /// model up here a few times, and the names are not attacker-chosen keys of a map
    /// that grows (the table is fixed at start).
    exact: hashbrown::HashMap<String, Price>,
    /// `prefix*` patterns, longest prefix first.
    prefixes: Vec<(String, Price)>,
}

impl PriceTable {
    /// An empty table.
    pub fn empty() -> PriceTable {
        PriceTable::default()
    }

    /// The table shipped with the crate: common OpenAI, Anthropic, Gemini and DeepSeek
    /// models, and a nominal price for the mock provider's models.
    pub fn builtin() -> PriceTable {
        PriceTable::from_json(BUILTIN).expect("the shipped price table is valid")
    }

    /// Reads a table in the shipped format: `{"models": {"name": {"input": "2.50",
    /// "output": "10.00", "cached_input": "1.25", "cache_write": "3.75"}}}`, decimal
    /// strings in USD per million tokens.
    pub fn from_json(json: &str) -> Result<PriceTable, PriceTableError> {
        let file: PriceFile =
            serde_json::from_str(json).map_err(|e| PriceTableError(e.to_string()))?;
        let mut table = PriceTable::empty();
        for (model, price) in file.models {
            table.insert(model, price);
        }
        Ok(table)
    }

    /// Adds or replaces the price of `model` (a name, or a `prefix*` pattern).
    pub fn insert(&mut self, model: impl Into<String>, price: Price) {
        let model = model.into();
        match model.strip_suffix('*') {
            Some(prefix) => {
                self.prefixes.retain(|(p, _)| p != prefix);
                self.prefixes.push((prefix.to_owned(), price));
                self.prefixes
                    .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
            }
            None => {
                self.exact.insert(model, price);
            }
        }
    }

    /// Adds every price of `other`, replacing those of the same name.
    pub fn extend(&mut self, other: PriceTable) {
        for (model, price) in other.exact {
            self.insert(model, price);
        }
        for (prefix, price) in other.prefixes {
            self.insert(format!("{prefix}*"), price);
        }
    }

    /// The price of `model`, if the table knows it.
    pub fn get(&self, model: &str) -> Option<&Price> {
        if let Some(price) = self.exact.get(model) {
            return Some(price);
        }
        if let Some((_, price)) = self
            .prefixes
            .iter()
            .find(|(p, _)| model.starts_with(p.as_str()))
        {
            return Some(price);
        }
        // Byte scans: `/` and `-` are ASCII, so every position found is a char boundary
        // (the `str` pattern searchers cost several times more on names this short).
        let bare = match model.bytes().rposition(|b| b == b'/') {
            Some(slash) => {
                let name = &model[slash + 1..];
                if let Some(price) = self.exact.get(name) {
                    return Some(price);
                }
                name
            }
            None => model,
        };
        // A dated or suffixed version: the longest listed name that `bare` continues
        // with a `-`. One lookup per `-`, from the right (the longest name first),
        // rather than a walk over the whole table (unpriced models pay this on every
        // request, several times).
        (0..bare.len())
            .rev()
            .filter(|&i| bare.as_bytes()[i] == b'-')
            .find_map(|dash| self.exact.get(&bare[..dash]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn golden_costs() {
        let table = PriceTable::builtin();
        let gpt4o = table.get("gpt-4o").unwrap();
        // 1000 in ($2.50/M) + 500 out ($10/M) = 0.0025 + 0.005
        assert_eq!(gpt4o.cost(&Usage::new(1000, 500)), m("0.0075"));
        // 400 of the 1000 input tokens cached at $1.25/M: 600×2.5 + 400×1.25 + 500×10 per M
        assert_eq!(
            gpt4o.cost(&Usage::new(1000, 500).with_cached(400)),
            m("0.007")
        );
        // Anthropic: cache reads at 0.30, writes at 3.75, the rest at 3.00, out at 15.
        let sonnet = table.get("claude-sonnet-4").unwrap();
        let mut usage = Usage::new(10_000, 1_000).with_cached(6_000);
        usage.cache_write_tokens = 2_000;
        // 2000×3 + 6000×0.3 + 2000×3.75 + 1000×15 = 6000+1800+7500+15000 = 30300 per M
        assert_eq!(sonnet.cost(&usage), m("0.0303"));
        // Fractional nano-dollars round half up once: 1 token at $0.025/M = 25 nanos;
        // 1 token at $0.0375/M = 37.5 -> 38.
        let odd = Price::new(m("0.0375"), Money::ZERO);
        assert_eq!(odd.cost(&Usage::new(1, 0)), Money::from_nanos(38));
        assert_eq!(odd.cost(&Usage::new(2, 0)), Money::from_nanos(75));
    }

    #[test]
    fn cached_counts_are_clamped_to_the_prompt() {
        let p = Price::new(m("1"), m("1")).with_cached_input(m("0"));
        assert_eq!(p.cost(&Usage::new(10, 0).with_cached(50)), Money::ZERO);
    }

    #[test]
    fn lookup_order() {
        let table = PriceTable::builtin();
        assert_eq!(table.get("gpt-4o-2024-08-06"), table.get("gpt-4o"));
        assert_eq!(
            table.get("gpt-4o-mini-2024-07-18"),
            table.get("gpt-4o-mini")
        );
        assert_eq!(table.get("openai/gpt-4o"), table.get("gpt-4o"));
        assert_eq!(
            table.get("claude-sonnet-4-20250514"),
            table.get("claude-sonnet-4")
        );
        assert!(table.get("mock/anything").is_some());
        assert!(table.get("gpt-4oo").is_none());
        assert!(table.get("unknown-model").is_none());
    }

    #[test]
    fn overrides_and_extensions() {
        let mut table = PriceTable::builtin();
        let custom = PriceTable::from_json(
            r#"{"models":{"gpt-4o":{"input":"1","output":"1"},"my-*":{"input":"3","output":"4"}}}"#,
        )
        .unwrap();
        table.extend(custom);
        assert_eq!(table.get("gpt-4o").unwrap().input, m("1"));
        assert_eq!(table.get("my-model").unwrap().output, m("4"));
        assert!(
            PriceTable::from_json(r#"{"models":{"x":{"input":2.5,"output":"1"}}}"#).is_err(),
            "floats are refused"
        );
    }
}
