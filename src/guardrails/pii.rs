//! [`PiiRedactor`]: emails, phone numbers and payment card numbers, by regular expression.

use std::borrow::Cow;

use regex::Regex;

use super::check::{Action, ContentCheck, Finding, Side};

/// What [`PiiRedactor`] does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PiiMode {
    /// Replace each match with `[EMAIL]`, `[PHONE]` or `[CARD]` (the default).
    #[default]
    Redact,
    /// Refuse the request, or end the answer, with `content_policy_violation`.
    Block,
}

/// Finds email addresses, phone numbers (7 to 15 digits, with the usual separators and
/// an optional `+country` prefix) and payment card numbers (13 to 19 digits passing the
/// Luhn check), in prompts and answers. An example [`ContentCheck`]; regular
/// expressions catch the common shapes, not every one.
///
/// ```
/// use tollgate::guardrails::{ContentCheck, PiiRedactor, Side};
///
/// let pii = PiiRedactor::new();
/// let text = "mail jane.doe@example.com or call +1 (555) 010-9999, card 4111 1111 1111 1111";
/// let findings = pii.scan(text, Side::Request);
/// assert_eq!(findings.len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct PiiRedactor {
    email: Regex,
    phone: Regex,
    card: Regex,
    mode: PiiMode,
    sides: (bool, bool),
}

impl Default for PiiRedactor {
    fn default() -> Self {
        PiiRedactor::new()
    }
}

impl PiiRedactor {
    /// Redacts in prompts and answers.
    pub fn new() -> Self {
        PiiRedactor {
            email: Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b")
                .expect("valid regex"),
            phone: Regex::new(
                r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,4}",
            )
            .expect("valid regex"),
            card: Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").expect("valid regex"),
            mode: PiiMode::Redact,
            sides: (true, true),
        }
    }

    /// Redacts or blocks.
    pub fn mode(mut self, mode: PiiMode) -> Self {
        self.mode = mode;
        self
    }

    /// Which sides are checked (default both).
    pub fn sides(mut self, requests: bool, responses: bool) -> Self {
        self.sides = (requests, responses);
        self
    }

    fn action(&self, what: &'static str, token: &'static str) -> Action {
        match self.mode {
            PiiMode::Redact => Action::Replace(Cow::Borrowed(token)),
            PiiMode::Block => Action::Block(Cow::Owned(format!(
                "The text contains {what}, which this gateway does not allow."
            ))),
        }
    }
}

/// Whether the digits of `s` pass the Luhn check.
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

impl ContentCheck for PiiRedactor {
    fn scan(&self, text: &str, side: Side) -> Vec<Finding> {
        let on = match side {
            Side::Request => self.sides.0,
            _ => self.sides.1,
        };
        if !on {
            return Vec::new();
        }
        let mut found: Vec<Finding> = Vec::new();
        for m in self.email.find_iter(text) {
            found.push(Finding {
                range: m.range(),
                action: self.action("an email address", "[EMAIL]"),
            });
        }
        for m in self.card.find_iter(text) {
            if luhn(m.as_str()) {
                found.push(Finding {
                    range: m.range(),
                    action: self.action("a payment card number", "[CARD]"),
                });
            }
        }
        for m in self.phone.find_iter(text) {
            let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
            if (7..=15).contains(&digits) {
                found.push(Finding {
                    range: m.range(),
                    action: self.action("a phone number", "[PHONE]"),
                });
            }
        }
        // In order, without overlaps: earlier kinds (email, card) win over phone.
        found.sort_by_key(|f| f.range.start);
        let mut out: Vec<Finding> = Vec::with_capacity(found.len());
        for f in found {
            if out
                .last()
                .is_some_and(|last| f.range.start < last.range.end)
            {
                continue;
            }
            out.push(f);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::check::apply;

    #[test]
    fn redacts_the_three_kinds() {
        let pii = PiiRedactor::new();
        let text = "Write to jane.doe@example.com, call +1 (555) 010-9999 or 020 7946 0958; \
                    card 4111-1111-1111-1111. Order 12345 ships in 2026.";
        let out = apply(text, &pii.scan(text, Side::Request));
        assert_eq!(
            out,
            "Write to [EMAIL], call [PHONE] or [PHONE]; card [CARD]. Order 12345 ships in 2026."
        );
    }

    #[test]
    fn a_number_failing_luhn_is_not_a_card() {
        let pii = PiiRedactor::new();
        let findings = pii.scan("ref 4111 1111 1111 1112", Side::Response);
        assert!(findings
            .iter()
            .all(|f| f.action != Action::Replace("[CARD]".into())));
    }

    #[test]
    fn block_mode_and_sides() {
        let pii = PiiRedactor::new().mode(PiiMode::Block).sides(true, false);
        let f = pii.scan("me@example.org", Side::Request);
        assert!(matches!(f[0].action, Action::Block(_)));
        assert!(pii.scan("me@example.org", Side::Response).is_empty());
    }
}
