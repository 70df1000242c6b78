//! Amounts of money as they arrive in JSON, TOML and on the command line:
//! always a decimal *string* (`"12.50"`, `"-3"`), never a JSON number, so
//! nothing passes through a float on the way in.
//!
//! The rules are [`provider_sdk::money::parse_price`]'s (plain digits, at
//! most six decimal places, below one billion); [`parse_signed`] also takes
//! a leading minus for adjustments.

use provider_sdk::money::{parse_price, PriceError};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

/// A non-negative amount (payment, credit, cap, credit limit, price).
pub fn parse_unsigned(s: &str) -> Result<Decimal, PriceError> {
    parse_price(s.trim())
}

/// An amount that may be negative (adjustments).
pub fn parse_signed(s: &str) -> Result<Decimal, PriceError> {
    let s = s.trim();
    match s.strip_prefix('-') {
        Some(rest) => parse_price(rest).map(|d| -d),
        None => parse_price(s),
    }
}

/// Serde: a non-negative amount string.
pub fn de_unsigned<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let s = AmountText::deserialize(d)?;
    parse_unsigned(&s.0).map_err(|e| serde::de::Error::custom(format!("amount {:?}: {e}", s.0)))
}

/// Serde: an optional non-negative amount string (`null` or absent: none).
pub fn de_opt_unsigned<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match Option::<AmountText>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_unsigned(&s.0)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("amount {:?}: {e}", s.0))),
    }
}

/// Serde: a signed amount string.
pub fn de_signed<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let s = AmountText::deserialize(d)?;
    parse_signed(&s.0).map_err(|e| serde::de::Error::custom(format!("amount {:?}: {e}", s.0)))
}

/// A string, with a message that says why a JSON number is refused.
struct AmountText(String);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AmountText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an amount as a decimal string such as \"12.50\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AmountText, E> {
                Ok(AmountText(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn signed_and_unsigned() {
        assert_eq!(parse_signed("-2.5").unwrap(), dec!(-2.5));
        assert_eq!(parse_signed(" 7 ").unwrap(), dec!(7));
        assert!(parse_unsigned("-1").is_err());
        for bad in ["", "-", "--1", "1e3", "NaN", "1,5", "0.0000001"] {
            assert!(parse_signed(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_numbers_are_refused() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "de_unsigned")]
            _a: Decimal,
        }
        assert!(serde_json::from_str::<T>(r#"{"_a": "1.10"}"#).is_ok());
        let err = serde_json::from_str::<T>(r#"{"_a": 1.1}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("decimal string"), "{err}");
    }
}
