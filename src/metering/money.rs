//! [`Money`]: exact amounts of US dollars in integer nano-dollars.

use std::fmt;
use std::str::FromStr;

/// Nano-dollars in one dollar.
const NANOS_PER_DOLLAR: i64 = 1_000_000_000;

/// An amount of US dollars, stored as a whole number of nano-dollars (10⁻⁹ USD).
///
/// Integer arithmetic only: adding a million records gives exactly the sum of their
/// costs. In JSON and text it is a decimal string (`"0.000150"`), never a float.
///
/// ```
/// use tollgate::metering::Money;
///
/// let price: Money = "2.50".parse().unwrap();
/// assert_eq!(price.nanos(), 2_500_000_000);
/// assert_eq!(price.to_string(), "2.500000");
/// assert_eq!(Money::from_nanos(150_000).to_string(), "0.000150");
/// assert_eq!(Money::from_nanos(18_750).to_string(), "0.00001875");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    /// Zero dollars.
    pub const ZERO: Money = Money(0);

    /// An amount of nano-dollars.
    pub const fn from_nanos(nanos: i64) -> Money {
        Money(nanos)
    }

    /// The amount in nano-dollars.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Sum, saturating at the bounds (about ±9.2 billion dollars).
    pub const fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// Difference, saturating at the bounds.
    pub const fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }
}

/// A decimal string that is not an amount of dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMoney(String);

impl fmt::Display for InvalidMoney {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an amount of dollars: expected a decimal string such as \"2.50\" \
             with at most 9 decimals",
            self.0
        )
    }
}

impl std::error::Error for InvalidMoney {}

impl FromStr for Money {
    type Err = InvalidMoney;

    fn from_str(s: &str) -> Result<Money, InvalidMoney> {
        let invalid = || InvalidMoney(s.to_owned());
        let text = s.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty())
            || !all_digits(whole)
            || !all_digits(frac)
            || frac.len() > 9
        {
            return Err(invalid());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let frac_nanos: i64 = format!("{frac:0<9}").parse().map_err(|_| invalid())?;
        let nanos = whole
            .checked_mul(NANOS_PER_DOLLAR)
            .and_then(|n| n.checked_add(frac_nanos))
            .ok_or_else(invalid)?;
        Ok(Money(if negative { -nanos } else { nanos }))
    }
}

impl fmt::Display for Money {
    /// At least six decimals (micro-dollars), more only when needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / NANOS_PER_DOLLAR as u64;
        let frac = format!("{:09}", abs % NANOS_PER_DOLLAR as u64);
        let frac = frac.trim_end_matches('0');
        let frac = format!("{frac:0<6}");
        f.pad(&format!("{sign}{whole}.{frac}"))
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for (text, nanos, shown) in [
            ("0", 0, "0.000000"),
            ("2.5", 2_500_000_000, "2.500000"),
            ("0.000000001", 1, "0.000000001"),
            ("-12.50", -12_500_000_000, "-12.500000"),
            (".75", 750_000_000, "0.750000"),
            ("+3", 3_000_000_000, "3.000000"),
        ] {
            let m: Money = text.parse().unwrap();
            assert_eq!(m.nanos(), nanos, "{text}");
            assert_eq!(m.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<Money>().unwrap(), m);
        }
    }

    #[test]
    fn rejects_what_is_not_money() {
        for bad in [
            "",
            ".",
            "1.2.3",
            "abc",
            "1e3",
            "0.0000000001",
            "99999999999999999999",
            "1,5",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad}");
        }
    }

    #[test]
    fn json_is_a_string() {
        let m = Money::from_nanos(150_000);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"0.000150\"");
        let back: Money = serde_json::from_str("\"0.000150\"").unwrap();
        assert_eq!(back, m);
    }
}
