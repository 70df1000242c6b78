//! Money: currencies and exact prices.
//!
//! Amounts are [`rust_decimal::Decimal`], never floats. [`Currency`] is an
//! ISO 4217 code (three uppercase ASCII letters), stored inline.
//! [`parse_price`] reads a price as written in a rate deck and refuses
//! anything that is not a plain, exact, non-negative decimal:
//!
//! ```
//! use provider_sdk::money::{parse_price, Currency, PriceError};
//!
//! let eur: Currency = "EUR".parse().unwrap();
//! assert_eq!(eur.as_str(), "EUR");
//! assert!(Currency::parse("eur").is_err());
//!
//! assert_eq!(parse_price("0.0125").unwrap().to_string(), "0.0125");
//! assert_eq!(parse_price("-1"), Err(PriceError::Negative));
//! assert!(parse_price("1e3").is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most decimal places a price may have (a millionth of the currency unit).
pub const MAX_PRICE_DECIMALS: u32 = 6;

/// Most digits before the decimal point (prices below one billion).
pub const MAX_PRICE_INTEGER_DIGITS: usize = 9;

/// Why a currency code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("currency must be an ISO 4217 code of three uppercase letters, got {0:?}")]
pub struct CurrencyError(pub String);

/// An ISO 4217 currency code such as `EUR`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code of exactly three uppercase ASCII letters.
    pub fn parse(s: &str) -> Result<Currency, CurrencyError> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(CurrencyError(s.chars().take(16).collect())),
        }
    }

    /// The code, e.g. `"EUR"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a price was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price is empty")]
    Empty,
    #[error("price is negative")]
    Negative,
    #[error("price is not a plain decimal number (digits with an optional '.' and fraction)")]
    NotADecimal,
    #[error("price has more than {MAX_PRICE_DECIMALS} decimal places")]
    TooManyDecimals,
    #[error("price has more than {MAX_PRICE_INTEGER_DIGITS} digits before the decimal point")]
    TooLarge,
}

/// Parses a price written as plain decimal digits: `12`, `0.0125`, `.5`,
/// `3.`. Exponents, signs other than a (refused) minus, `NaN`, `inf`,
/// thousands separators and more than [`MAX_PRICE_DECIMALS`] decimal places
/// are refused, so the value is exactly what was written.
pub fn parse_price(s: &str) -> Result<Decimal, PriceError> {
    if s.is_empty() {
        return Err(PriceError::Empty);
    }
    let body = match s.strip_prefix('-') {
        Some(rest) if is_plain_decimal(rest) => return Err(PriceError::Negative),
        Some(_) => return Err(PriceError::NotADecimal),
        None => s,
    };
    if !is_plain_decimal(body) {
        return Err(PriceError::NotADecimal);
    }
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if frac.len() > MAX_PRICE_DECIMALS as usize {
        return Err(PriceError::TooManyDecimals);
    }
    if int.trim_start_matches('0').len() > MAX_PRICE_INTEGER_DIGITS {
        return Err(PriceError::TooLarge);
    }
    // At most 9 + 6 significant digits: always exact in a Decimal.
    let mut mantissa: i64 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(b - b'0')))
            .ok_or(PriceError::TooLarge)?;
    }
    Ok(Decimal::new(mantissa, frac.len() as u32))
}

/// Checks a price that arrived already as a `Decimal` (e.g. from JSON)
/// against the same rules as [`parse_price`].
pub fn check_price(price: Decimal) -> Result<Decimal, PriceError> {
    if price.is_sign_negative() && !price.is_zero() {
        return Err(PriceError::Negative);
    }
    let normal = price.normalize();
    if normal.scale() > MAX_PRICE_DECIMALS {
        return Err(PriceError::TooManyDecimals);
    }
    if normal.trunc().abs() >= Decimal::from(1_000_000_000i64) {
        return Err(PriceError::TooLarge);
    }
    Ok(price.abs())
}

/// `digits[.digits]` with at least one digit somewhere.
fn is_plain_decimal(s: &str) -> bool {
    let mut dots = 0;
    let mut digits = 0;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return false,
        }
    }
    digits > 0 && dots <= 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn currency_codes() {
        for ok in ["EUR", "USD", "CHF"] {
            assert_eq!(Currency::parse(ok).unwrap().to_string(), ok);
        }
        for bad in ["", "eur", "EU", "EURO", "E1R", "ÉUR", " EU"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
        let c: Currency = serde_json::from_str("\"GBP\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"GBP\"");
        assert!(serde_json::from_str::<Currency>("\"gbp\"").is_err());
    }

    #[test]
    fn prices_are_exact_plain_decimals() {
        for (s, v) in [
            ("0", dec!(0)),
            ("12", dec!(12)),
            ("0.0125", dec!(0.0125)),
            (".5", dec!(0.5)),
            ("3.", dec!(3)),
            ("000.100000", dec!(0.1)),
            ("999999999.999999", dec!(999999999.999999)),
            ("0000000000001", dec!(1)),
        ] {
            assert_eq!(parse_price(s), Ok(v), "{s}");
        }
        use PriceError::*;
        for (s, e) in [
            ("", Empty),
            ("-1", Negative),
            ("-0.5", Negative),
            ("-", NotADecimal),
            ("+1", NotADecimal),
            ("1e3", NotADecimal),
            ("NaN", NotADecimal),
            ("inf", NotADecimal),
            ("1,5", NotADecimal),
            ("1.2.3", NotADecimal),
            (".", NotADecimal),
            (" 1", NotADecimal),
            ("0x10", NotADecimal),
            ("0.1234567", TooManyDecimals),
            ("1000000000", TooLarge),
        ] {
            assert_eq!(parse_price(s), Err(e), "{s}");
        }
    }

    #[test]
    fn check_price_applies_the_same_rules() {
        assert_eq!(check_price(dec!(0.0125)), Ok(dec!(0.0125)));
        assert_eq!(check_price(dec!(1.5000000)), Ok(dec!(1.5000000)));
        assert_eq!(check_price(dec!(-0.01)), Err(PriceError::Negative));
        assert_eq!(
            check_price(dec!(0.0000001)),
            Err(PriceError::TooManyDecimals)
        );
        assert_eq!(check_price(dec!(1000000000)), Err(PriceError::TooLarge));
    }
}
