//! Subscribers: who they are, their account terms and their standing.
//!
//! A [`NewSubscriber`] (from the API's JSON, the CLI's flags) is checked by
//! [`NewSubscriber::validate`] before anything is stored; a
//! [`SubscriberPatch`] changes some fields of an existing one. The plan is
//! only a *name*: plans are defined in the configuration and priced by the
//! rating module.

use crate::amount;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use provider_sdk::money::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest subscriber name, e-mail address or plan name accepted.
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_PLAN_LEN: usize = 64;

/// Why subscriber data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub message: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, message: impl Into<String>) -> InvalidInput {
        InvalidInput {
            field,
            message: message.into(),
        }
    }
}

/// Whether a subscriber's calls are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberStatus {
    Active,
    /// Calls refused (403) until resumed.
    Suspended,
    /// For good: calls refused (403), cannot be resumed.
    Closed,
}

impl SubscriberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Active => "active",
            SubscriberStatus::Suspended => "suspended",
            SubscriberStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<SubscriberStatus> {
        match s {
            "active" => Some(SubscriberStatus::Active),
            "suspended" => Some(SubscriberStatus::Suspended),
            "closed" => Some(SubscriberStatus::Closed),
            _ => None,
        }
    }
}

/// How the subscriber pays: from a balance paid in advance, or on account
/// up to a credit limit (the balance may go down to `-credit_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Account {
    Prepaid,
    Postpaid {
        #[serde(deserialize_with = "amount::de_unsigned")]
        credit_limit: Decimal,
    },
}

impl Account {
    pub fn kind(&self) -> &'static str {
        match self {
            Account::Prepaid => "prepaid",
            Account::Postpaid { .. } => "postpaid",
        }
    }

    pub fn credit_limit(&self) -> Option<Decimal> {
        match self {
            Account::Prepaid => None,
            Account::Postpaid { credit_limit } => Some(*credit_limit),
        }
    }
}

/// A stored subscriber.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscriber {
    pub id: i64,
    pub name: String,
    pub status: SubscriberStatus,
    pub email: String,
    /// IANA time zone: rules' time windows and "today"/"this month" spend.
    #[serde(serialize_with = "ser_tz")]
    pub time_zone: Tz,
    pub plan: String,
    pub currency: Currency,
    pub account: Account,
    pub daily_spend_cap: Option<Decimal>,
    pub monthly_spend_cap: Option<Decimal>,
    pub max_concurrent_calls: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an operator supplies to add a subscriber.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscriber {
    pub name: String,
    pub email: String,
    #[serde(deserialize_with = "de_tz")]
    pub time_zone: Tz,
    pub plan: String,
    pub currency: Currency,
    pub account: Account,
    #[serde(default, deserialize_with = "amount::de_opt_unsigned")]
    pub daily_spend_cap: Option<Decimal>,
    #[serde(default, deserialize_with = "amount::de_opt_unsigned")]
    pub monthly_spend_cap: Option<Decimal>,
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
}

impl NewSubscriber {
    /// Checks what the types cannot: text fields and limits.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        check_name(&self.name)?;
        check_email(&self.email)?;
        check_plan(&self.plan)?;
        Ok(())
    }
}

/// Fields to change; absent fields stay. For the caps and the call limit,
/// `null` removes the limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "de_some_tz")]
    pub time_zone: Option<Tz>,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub account: Option<Account>,
    #[serde(default, deserialize_with = "de_patch_amount")]
    pub daily_spend_cap: Option<Option<Decimal>>,
    #[serde(default, deserialize_with = "de_patch_amount")]
    pub monthly_spend_cap: Option<Option<Decimal>>,
    #[serde(default, deserialize_with = "de_patch_u32")]
    pub max_concurrent_calls: Option<Option<u32>>,
}

impl SubscriberPatch {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(n) = &self.name {
            check_name(n)?;
        }
        if let Some(e) = &self.email {
            check_email(e)?;
        }
        if let Some(p) = &self.plan {
            check_plan(p)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == SubscriberPatch::default()
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

pub fn check_name(name: &str) -> Result<(), InvalidInput> {
    if name.trim().is_empty() {
        return Err(InvalidInput::new("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(InvalidInput::new(
            "name",
            format!("longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if has_control(name) {
        return Err(InvalidInput::new("name", "contains control characters"));
    }
    Ok(())
}

/// A plausible address: `local@domain`, no spaces or control characters.
/// Deliverability is the mail server's business.
pub fn check_email(email: &str) -> Result<(), InvalidInput> {
    let bad = |m: &str| Err(InvalidInput::new("email", format!("{m}: {email:?}")));
    if email.len() > MAX_EMAIL_LEN {
        return bad("too long");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains spaces or control characters");
    }
    match email.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !local.contains('@') =>
        {
            Ok(())
        }
        _ => bad("not an e-mail address"),
    }
}

/// Plan names are identifiers: letters, digits, `-`, `_`, `.`.
pub fn check_plan(plan: &str) -> Result<(), InvalidInput> {
    if plan.is_empty() || plan.len() > MAX_PLAN_LEN {
        return Err(InvalidInput::new(
            "plan",
            format!("must be 1 to {MAX_PLAN_LEN} characters"),
        ));
    }
    if !plan
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(InvalidInput::new(
            "plan",
            format!("{plan:?}: only letters, digits, '-', '_' and '.' are allowed"),
        ));
    }
    Ok(())
}

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`), case-sensitive.
pub fn parse_time_zone(name: &str) -> Result<Tz, InvalidInput> {
    name.parse::<Tz>().map_err(|_| {
        InvalidInput::new(
            "time_zone",
            format!(
                "{:?} is not an IANA time zone name (such as Europe/Berlin)",
                name.chars().take(64).collect::<String>()
            ),
        )
    })
}

/// Serde: a time zone as its IANA name.
pub fn ser_tz<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// Serde: an IANA time zone name.
pub fn de_tz<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    let s = String::deserialize(d)?;
    parse_time_zone(&s).map_err(|e| serde::de::Error::custom(e.message))
}

fn de_some_tz<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tz>, D::Error> {
    de_tz(d).map(Some)
}

fn de_patch_amount<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Decimal>>, D::Error> {
    amount::de_opt_unsigned(d).map(Some)
}

fn de_patch_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_checks() {
        assert!(check_email("a@b.example").is_ok());
        for bad in ["", "a", "@b", "a@", "a b@c", "a@.c", "a@c.", "a@b@c"] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert!(check_plan("standard-2026").is_ok());
        assert!(check_plan("two words").is_err());
        assert!(check_name("  ").is_err());
        assert!(check_name("A\u{7}").is_err());
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        assert!(parse_time_zone("europe/berlin").is_err());
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn json_forms() {
        let s: NewSubscriber = serde_json::from_str(
            r#"{"name":"Ada","email":"ada@example.net","time_zone":"Europe/Berlin",
                "plan":"standard","currency":"EUR",
                "account":{"kind":"postpaid","credit_limit":"50.00"},
                "daily_spend_cap":"5"}"#,
        )
        .unwrap();
        assert_eq!(s.account.credit_limit(), Some(Decimal::new(50, 0)));
        assert_eq!(s.monthly_spend_cap, None);
        let bad = serde_json::from_str::<NewSubscriber>(
            r#"{"name":"Ada","email":"ada@example.net","time_zone":"Nowhere/City",
                "plan":"standard","currency":"EUR","account":{"kind":"prepaid"}}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("IANA"));
        let p: SubscriberPatch =
            serde_json::from_str(r#"{"daily_spend_cap":null,"monthly_spend_cap":"9"}"#).unwrap();
        assert_eq!(p.daily_spend_cap, Some(None));
        assert_eq!(p.monthly_spend_cap, Some(Some(Decimal::new(9, 0))));
        assert_eq!(p.max_concurrent_calls, None);
        assert!(serde_json::from_str::<SubscriberPatch>(r#"{"currency":"USD"}"#).is_err());
    }
}
