//! Phone numbers (E.164) and number prefixes.
//!
//! [`E164`] is a normalised international number: 1 to 15 digits, the first
//! one non-zero (a country code never starts with 0). [`E164::parse`] accepts
//! what people and switches write:
//!
//! ```
//! use provider_sdk::number::{E164, Prefix};
//!
//! let n = E164::parse("+49 (30) 123-456").unwrap();
//! assert_eq!(n.digits(), "4930123456");
//! assert_eq!(n.to_string(), "+4930123456");
//! assert_eq!(E164::parse("0049 30 123456").unwrap(), n);
//! assert_eq!(E164::parse("+49 (0)30 123456").unwrap(), n);
//!
//! let p = Prefix::parse("4930").unwrap();
//! assert!(p.matches(&n));
//! assert_eq!(p.to_string(), "4930");
//! ```
//!
//! A national form such as `030 123456` is refused: without a country it
//! cannot be routed. Both types serialise as strings (`"+4930123456"`,
//! `"4930"`) and store their digits inline (no heap allocation).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most digits an E.164 number (and so a useful prefix) can have.
pub const MAX_DIGITS: usize = 15;

/// Longest input [`E164::parse`] looks at; anything longer is refused
/// before any work is done (punctuation included).
pub const MAX_INPUT_LEN: usize = 64;

/// Why a number or prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("the number is empty")]
    Empty,
    #[error("input longer than {MAX_INPUT_LEN} characters")]
    InputTooLong,
    #[error("more than {MAX_DIGITS} digits")]
    TooManyDigits,
    #[error("invalid character {ch:?} at position {position}")]
    InvalidCharacter { ch: char, position: usize },
    #[error("'+' is only allowed at the start")]
    MisplacedPlus,
    #[error("unbalanced or nested parentheses")]
    UnbalancedParentheses,
    #[error("national number without a country code (starts with a single 0)")]
    NationalFormat,
    #[error("country code cannot start with 0")]
    LeadingZero,
}

/// Digits stored inline: ASCII `'0'..='9'`, `len` of them, the first non-zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Digits {
    len: u8,
    buf: [u8; MAX_DIGITS],
}

impl Digits {
    /// `digits` must be 1..=15 ASCII digits, the first non-zero.
    fn from_ascii(digits: &[u8]) -> Result<Digits, NumberError> {
        let first = *digits.first().ok_or(NumberError::Empty)?;
        if digits.len() > MAX_DIGITS {
            return Err(NumberError::TooManyDigits);
        }
        if first == b'0' {
            return Err(NumberError::LeadingZero);
        }
        let mut buf = [0u8; MAX_DIGITS];
        for (position, (slot, &b)) in buf.iter_mut().zip(digits).enumerate() {
            if !b.is_ascii_digit() {
                return Err(NumberError::InvalidCharacter {
                    ch: char::from(b),
                    position,
                });
            }
            *slot = b;
        }
        Ok(Digits {
            len: digits.len() as u8, // <= 15, checked above
            buf,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored, so this never falls back.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// A normalised E.164 number: 1..=15 digits, the first non-zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(Digits);

impl E164 {
    /// Normalises a number as written by a person or a switch.
    ///
    /// Accepted: a leading `+` or `00` (international call prefix), digits
    /// separated by spaces, dashes, dots and parentheses, and the trunk-prefix
    /// marker `(0)` after the country code (`+49 (0)30 ...`). Plain digits
    /// without `+` are taken as already international (as SIP URIs carry them).
    pub fn parse(input: &str) -> Result<E164, NumberError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(NumberError::InputTooLong);
        }
        let s = input.trim();
        if s.is_empty() {
            return Err(NumberError::Empty);
        }
        let (international, rest) = match s.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let mut digits = [0u8; MAX_INPUT_LEN];
        let mut n = 0usize;
        let mut open_paren: Option<usize> = None;
        let offset = s.len() - rest.len() + (input.len() - input.trim_start().len());
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'0'..=b'9' => {
                    digits[n] = b;
                    n += 1;
                }
                b' ' | b'-' | b'.' | b'\t' => {}
                b'(' => {
                    if open_paren.is_some() {
                        return Err(NumberError::UnbalancedParentheses);
                    }
                    // "(0)" after an international prefix is the trunk prefix
                    // shown for national dialling: it is not part of the number.
                    if international && n > 0 && bytes.get(i + 1..i + 3) == Some(b"0)") {
                        i += 3;
                        continue;
                    }
                    open_paren = Some(n);
                }
                b')' => {
                    if open_paren.take().is_none() {
                        return Err(NumberError::UnbalancedParentheses);
                    }
                }
                b'+' => return Err(NumberError::MisplacedPlus),
                _ => {
                    let ch = rest[i..].chars().next().unwrap_or('\u{FFFD}');
                    return Err(NumberError::InvalidCharacter {
                        ch,
                        position: offset + i,
                    });
                }
            }
            i += 1;
        }
        if open_paren.is_some() {
            return Err(NumberError::UnbalancedParentheses);
        }
        let mut d = &digits[..n];
        if d.is_empty() {
            return Err(NumberError::Empty);
        }
        if !international {
            if let Some(after) = d.strip_prefix(b"00") {
                d = after;
            } else if d[0] == b'0' {
                return Err(NumberError::NationalFormat);
            }
        }
        Digits::from_ascii(d).map(E164)
    }

    /// The digits without `+`, e.g. `"4930123456"`.
    pub fn digits(&self) -> &str {
        self.0.as_str()
    }

    /// The digits as ASCII bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Number of digits (1..=15).
    #[allow(clippy::len_without_is_empty)] // never empty by construction
    pub fn len(&self) -> usize {
        usize::from(self.0.len)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.digits())
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164(+{})", self.digits())
    }
}

impl FromStr for E164 {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        E164::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A destination prefix of a rate deck: 1..=15 digits, the first non-zero.
///
/// Written without `+` (`"4930"`); [`Prefix::parse`] also accepts a leading
/// `+`. No punctuation: prefixes come from machine-written decks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(Digits);

impl Prefix {
    /// Parses `"4930"` or `"+4930"`.
    pub fn parse(input: &str) -> Result<Prefix, NumberError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(NumberError::InputTooLong);
        }
        let s = input.strip_prefix('+').unwrap_or(input);
        if s.is_empty() {
            return Err(NumberError::Empty);
        }
        if let Some((position, ch)) = s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            let position = position + (input.len() - s.len());
            return Err(if ch == '+' {
                NumberError::MisplacedPlus
            } else {
                NumberError::InvalidCharacter { ch, position }
            });
        }
        Digits::from_ascii(s.as_bytes()).map(Prefix)
    }

    /// The first `len` digits of `number` as a prefix, or `None` when `len`
    /// is 0 or longer than the number.
    pub fn of_number(number: &E164, len: usize) -> Option<Prefix> {
        let bytes = number.as_bytes().get(..len)?;
        Digits::from_ascii(bytes).ok().map(Prefix)
    }

    /// The digits, e.g. `"4930"`.
    pub fn digits(&self) -> &str {
        self.0.as_str()
    }

    /// The digits as ASCII bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Number of digits (1..=15).
    #[allow(clippy::len_without_is_empty)] // never empty by construction
    pub fn len(&self) -> usize {
        usize::from(self.0.len)
    }

    /// Whether `number` starts with this prefix.
    pub fn matches(&self, number: &E164) -> bool {
        number.as_bytes().starts_with(self.as_bytes())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.digits())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({})", self.digits())
    }
}

impl FromStr for Prefix {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Prefix::parse(s)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.digits())
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Prefix::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let ok = [
            ("+4930123456", "4930123456"),
            ("+49 30 123-456", "4930123456"),
            ("0049 30 123456", "4930123456"),
            ("004930123456", "4930123456"),
            ("+49 (30) 123.456", "4930123456"),
            ("+49 (0)30 123456", "4930123456"),
            ("+49(0)30123456", "4930123456"),
            ("  +1 (212) 555-0100 ", "12125550100"),
            ("4930123456", "4930123456"),
            ("+1", "1"),
            ("+123456789012345", "123456789012345"),
            ("00 1 212 555 0100", "12125550100"),
            ("+44\t20 7946 0958", "442079460958"),
        ];
        for (input, digits) in ok {
            let n = E164::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(n.digits(), digits, "{input:?}");
            assert_eq!(n.to_string(), format!("+{digits}"));
            assert_eq!(n.len(), digits.len());
        }
        use NumberError::*;
        let bad: [(&str, NumberError); 16] = [
            ("", Empty),
            ("   ", Empty),
            ("+", Empty),
            ("00", Empty),
            ("()", Empty),
            ("030 123456", NationalFormat),
            ("+0 30 123", LeadingZero),
            ("000 49 30", LeadingZero),
            ("+1234567890123456", TooManyDigits),
            (
                "+49 30 12a456",
                InvalidCharacter {
                    ch: 'a',
                    position: 9,
                },
            ),
            (
                "+49 30 ü",
                InvalidCharacter {
                    ch: 'ü',
                    position: 7,
                },
            ),
            ("+49+30", MisplacedPlus),
            ("++49", MisplacedPlus),
            ("+49 (30 123", UnbalancedParentheses),
            ("+49 30) 123", UnbalancedParentheses),
            ("+49 ((30)) 1", UnbalancedParentheses),
        ];
        for (input, err) in bad {
            assert_eq!(E164::parse(input), Err(err), "{input:?}");
        }
        assert_eq!(E164::parse(&"1".repeat(65)), Err(NumberError::InputTooLong));
        // "(0)" is only a trunk marker after a country code.
        assert_eq!(E164::parse("(0)30 123"), Err(NumberError::NationalFormat));
    }

    #[test]
    fn prefix_parse_and_match() {
        let n = E164::parse("+4930123456").unwrap();
        for (p, m) in [
            ("49", true),
            ("+4930", true),
            ("4930123456", true),
            ("44", false),
        ] {
            assert_eq!(Prefix::parse(p).unwrap().matches(&n), m, "{p}");
        }
        assert!(!Prefix::parse("49301234567").unwrap().matches(&n));
        assert_eq!(Prefix::parse("+4930").unwrap().to_string(), "4930");
        use NumberError::*;
        assert_eq!(Prefix::parse(""), Err(Empty));
        assert_eq!(Prefix::parse("+"), Err(Empty));
        assert_eq!(Prefix::parse("049"), Err(LeadingZero));
        assert_eq!(
            Prefix::parse("4 9"),
            Err(InvalidCharacter {
                ch: ' ',
                position: 1
            })
        );
        assert_eq!(
            Prefix::parse("+4-9"),
            Err(InvalidCharacter {
                ch: '-',
                position: 2
            })
        );
        assert_eq!(Prefix::parse("4+9"), Err(MisplacedPlus));
        assert_eq!(Prefix::parse("1234567890123456"), Err(TooManyDigits));
        assert_eq!(Prefix::of_number(&n, 4).unwrap().digits(), "4930");
        assert_eq!(Prefix::of_number(&n, 0), None);
        assert_eq!(Prefix::of_number(&n, 11), None);
    }

    #[test]
    fn serde_round_trip_and_rejects_bad() {
        let n = E164::parse("+49 30 123").unwrap();
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"+4930123\"");
        assert_eq!(serde_json::from_str::<E164>(&json).unwrap(), n);
        assert!(serde_json::from_str::<E164>("\"030\"").is_err());
        assert!(serde_json::from_str::<E164>("4930").is_err());
        let p = Prefix::parse("4930").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"4930\"");
        assert_eq!(serde_json::from_str::<Prefix>("\"+4930\"").unwrap(), p);
        assert!(serde_json::from_str::<Prefix>("\"49x\"").is_err());
        assert_eq!("+4930123".parse::<E164>().unwrap(), n);
        assert_eq!("4930".parse::<Prefix>().unwrap(), p);
    }
}
