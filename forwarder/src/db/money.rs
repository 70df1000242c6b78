//! How prices are stored: `numeric` in PostgreSQL, decimal text in SQLite,
//! always from and to `rust_decimal::Decimal` (exact; never a float).
//!
//! [`Money`] is the column's SQL type (one type for both backends, so the
//! queries in [`crate::store`] are written once); [`StoredMoney`] is the
//! Rust value bound to and read from it.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::data_types::PgNumeric;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{HasSqlType, SqlType, Text};
use diesel::sqlite::Sqlite;
use rust_decimal::Decimal;
use std::str::FromStr;

use super::MultiBackend;

/// PostgreSQL `numeric` (OID 1700); SQLite `TEXT`.
#[derive(Debug, Clone, Copy, Default, SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 1700, array_oid = 1231))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Money;

impl HasSqlType<Money> for MultiBackend {
    fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
        MultiBackend::lookup_sql_type::<Money>(lookup)
    }
}

/// A price as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Money)]
pub struct StoredMoney(pub Decimal);

impl ToSql<Money, MultiBackend> for StoredMoney {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Money, self));
        Ok(IsNull::No)
    }
}

impl FromSql<Money, MultiBackend> for StoredMoney {
    fn from_sql(bytes: <MultiBackend as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        bytes.from_sql::<StoredMoney, Money>()
    }
}

impl ToSql<Money, Sqlite> for StoredMoney {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.normalize().to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<Money, Sqlite> for StoredMoney {
    fn from_sql(bytes: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Sqlite>>::from_sql(bytes)?;
        Decimal::from_str(&text)
            .map(StoredMoney)
            .map_err(|e| format!("stored amount {text:?}: {e}").into())
    }
}

impl ToSql<Money, Pg> for StoredMoney {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        // Stored normalised (no trailing zeros), as in SQLite.
        let n = to_pg_numeric(self.0.normalize());
        ToSql::<diesel::sql_types::Numeric, Pg>::to_sql(&n, &mut out.reborrow())
    }
}

impl FromSql<Money, Pg> for StoredMoney {
    fn from_sql(bytes: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let n = <PgNumeric as FromSql<diesel::sql_types::Numeric, Pg>>::from_sql(bytes)?;
        from_pg_numeric(&n).map(StoredMoney).map_err(Into::into)
    }
}

/// Decimal to PostgreSQL's base-10000 wire form.
pub fn to_pg_numeric(d: Decimal) -> PgNumeric {
    let scale = d.scale();
    let text = d.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((text.as_str(), ""));
    let int = int.trim_start_matches('0');
    // Integer digits left-padded, fraction right-padded, to groups of four.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let all: String = "0".repeat(int_pad) + int + frac + &"0".repeat(frac_pad);
    let mut digits: Vec<i16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, b| acc * 10 + i16::from(b - b'0')))
        .collect();
    let int_groups = (int.len() + int_pad) / 4;
    let mut weight = i16::try_from(int_groups).unwrap_or(i16::MAX) - 1;
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let scale = u16::try_from(scale).unwrap_or(u16::MAX);
    if d.is_sign_negative() && !d.is_zero() {
        PgNumeric::Negative {
            weight,
            scale,
            digits,
        }
    } else {
        PgNumeric::Positive {
            weight,
            scale,
            digits,
        }
    }
}

/// PostgreSQL's wire form to Decimal (NaN and out-of-range values are errors).
pub fn from_pg_numeric(n: &PgNumeric) -> Result<Decimal, String> {
    let (negative, weight, scale, digits) = match n {
        PgNumeric::Positive {
            weight,
            scale,
            digits,
        } => (false, *weight, *scale, digits),
        PgNumeric::Negative {
            weight,
            scale,
            digits,
        } => (true, *weight, *scale, digits),
        PgNumeric::NaN => return Err("stored price is NaN".into()),
    };
    let mut int = String::new();
    let mut frac = String::new();
    for i in 0..digits.len().max(usize::try_from(weight + 1).unwrap_or(0)) {
        let g = digits.get(i).copied().unwrap_or(0);
        if !(0..10_000).contains(&g) {
            return Err(format!("bad numeric digit group {g}"));
        }
        let pos = weight - i16::try_from(i).map_err(|_| "numeric too long")?;
        if pos >= 0 {
            int.push_str(&format!("{g:04}"));
        } else {
            frac.push_str(&format!("{g:04}"));
        }
    }
    // Groups between the point and the first stored group are zero.
    if weight < -1 {
        let lead = "0000".repeat(usize::try_from(-1 - weight).unwrap_or(0));
        frac = lead + &frac;
    }
    let text = format!(
        "{}{}.{}",
        if negative { "-" } else { "" },
        if int.is_empty() { "0" } else { &int },
        if frac.is_empty() { "0" } else { &frac }
    );
    let mut d = Decimal::from_str(&text).map_err(|e| format!("stored price {text}: {e}"))?;
    d.rescale(u32::from(scale));
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_wire_form() {
        for s in [
            "0",
            "0.0",
            "1",
            "-1",
            "0.0001",
            "0.00001",
            "12345.6789",
            "-0.015",
            "10000",
            "100000000",
            "0.1000",
            "9999.9999",
            "123456789012345678.123456789",
            "0.000000000001",
        ] {
            let d = Decimal::from_str(s).unwrap();
            let back = from_pg_numeric(&to_pg_numeric(d)).unwrap();
            assert_eq!(back, d, "{s}");
            assert_eq!(back.to_string(), d.to_string(), "scale of {s}");
        }
    }

    #[test]
    fn matches_postgres_encoding() {
        // 12345.6789 is weight 1, digits [1, 2345, 6789], scale 4.
        assert_eq!(
            to_pg_numeric(Decimal::from_str("12345.6789").unwrap()),
            PgNumeric::Positive {
                weight: 1,
                scale: 4,
                digits: vec![1, 2345, 6789]
            }
        );
        // 0.00001 is weight -2, digits [1000], scale 5.
        assert_eq!(
            to_pg_numeric(Decimal::from_str("0.00001").unwrap()),
            PgNumeric::Positive {
                weight: -2,
                scale: 5,
                digits: vec![1000]
            }
        );
        assert!(from_pg_numeric(&PgNumeric::NaN).is_err());
    }
}
