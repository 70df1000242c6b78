//! May this call go ahead? A pure decision over data the caller loads
//! (the subscriber by called number, and its [`Standing`] from
//! [`crate::store::ledger::standing`]).
//!
//! | condition | SIP status |
//! |---|---|
//! | number not assigned to any subscriber | 404 |
//! | subscriber suspended or closed | 403 |
//! | no funds: prepaid balance ≤ 0, postpaid balance ≤ −credit limit | 402 |
//! | today's or this month's call charges reached the cap | 403 |
//! | as many calls in progress as the concurrent-call cap | 486 |
//!
//! Checks run in that order; the first failing one is the answer. Every
//! [`Refusal`] carries a reason text for the Reason/Warning header.
//! [`max_call_seconds`] is the limit the call path puts on a call at setup
//! so it ends before the money runs out.

use crate::subscriber::{Account, Subscriber, SubscriberStatus};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;

/// A subscriber's money and calls at the moment of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// Sum of the ledger (negative: owes money).
    pub balance: Decimal,
    /// Call charges since local midnight in the subscriber's zone.
    pub spend_today: Decimal,
    /// Call charges since the first of the local month.
    pub spend_month: Decimal,
    /// Calls in progress (open CDRs), not counting the one being decided.
    pub active_calls: u32,
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    UnknownNumber,
    Suspended,
    Closed,
    NoFunds,
    DailyCap,
    MonthlyCap,
    ConcurrentCalls,
    NoRule,
}

/// A refused call: the SIP final status to answer and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    fn new(kind: RefusalKind, status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            status,
            reason: reason.into(),
        }
    }

    /// The called number belongs to no subscriber: 404.
    pub fn unknown_number() -> Refusal {
        Refusal::new(RefusalKind::UnknownNumber, 404, "number not in service")
    }

    /// No forwarding rule applies now ([`crate::rules::select`] gave
    /// `None`): 480 Temporarily Unavailable.
    pub fn no_matching_rule() -> Refusal {
        Refusal::new(
            RefusalKind::NoRule,
            480,
            "no forwarding rule applies at this time",
        )
    }
}

/// What the subscriber may still spend on calls: the balance for prepaid,
/// the balance plus the credit limit for postpaid.
pub fn headroom(account: &Account, balance: Decimal) -> Decimal {
    match account {
        Account::Prepaid => balance,
        Account::Postpaid { credit_limit } => balance + credit_limit,
    }
}

/// Decides whether a call to a number of `subscriber` (`None`: the number
/// belongs to nobody) may go ahead.
pub fn authorize(subscriber: Option<&Subscriber>, standing: &Standing) -> Result<(), Refusal> {
    let Some(s) = subscriber else {
        return Err(Refusal::unknown_number());
    };
    match s.status {
        SubscriberStatus::Active => {}
        SubscriberStatus::Suspended => {
            return Err(Refusal::new(
                RefusalKind::Suspended,
                403,
                "subscriber suspended",
            ))
        }
        SubscriberStatus::Closed => {
            return Err(Refusal::new(
                RefusalKind::Closed,
                403,
                "subscriber account closed",
            ))
        }
    }
    if headroom(&s.account, standing.balance) <= Decimal::ZERO {
        let reason = match s.account {
            Account::Prepaid => format!(
                "prepaid balance exhausted ({} {})",
                standing.balance, s.currency
            ),
            Account::Postpaid { credit_limit } => format!(
                "credit limit of {credit_limit} {} reached (balance {})",
                s.currency, standing.balance
            ),
        };
        return Err(Refusal::new(RefusalKind::NoFunds, 402, reason));
    }
    if let Some(cap) = s.daily_spend_cap {
        if standing.spend_today >= cap {
            return Err(Refusal::new(
                RefusalKind::DailyCap,
                403,
                format!(
                    "daily spend cap of {cap} {} reached ({} spent today)",
                    s.currency, standing.spend_today
                ),
            ));
        }
    }
    if let Some(cap) = s.monthly_spend_cap {
        if standing.spend_month >= cap {
            return Err(Refusal::new(
                RefusalKind::MonthlyCap,
                403,
                format!(
                    "monthly spend cap of {cap} {} reached ({} spent this month)",
                    s.currency, standing.spend_month
                ),
            ));
        }
    }
    if let Some(cap) = s.max_concurrent_calls {
        if standing.active_calls >= cap {
            return Err(Refusal::new(
                RefusalKind::ConcurrentCalls,
                486,
                format!("concurrent-call limit of {cap} reached"),
            ));
        }
    }
    Ok(())
}

/// Whole seconds `funds` pays for at `price_per_second`, rounded down.
/// `None` when the price is zero (money sets no limit); `Some(0)` when the
/// funds do not cover one second.
pub fn seconds_affordable(funds: Decimal, price_per_second: Decimal) -> Option<u64> {
    if price_per_second <= Decimal::ZERO {
        return None;
    }
    if funds <= Decimal::ZERO {
        return Some(0);
    }
    // Decimal division is exact to 28 digits; floor, then saturate.
    Some(
        (funds / price_per_second)
            .floor()
            .to_u64()
            .unwrap_or(u64::MAX),
    )
}

/// The longest a call may last at `price_per_second` (from rating) before
/// the subscriber's money runs out: the prepaid balance (postpaid: balance
/// plus credit limit) and what is left of the daily and monthly caps, the
/// smallest of them. `None`: no limit. The call path ends the call when it
/// is reached. A connect fee is the caller's to subtract first (pass the
/// standing with the fee already charged against it).
pub fn max_call_seconds(
    subscriber: &Subscriber,
    standing: &Standing,
    price_per_second: Decimal,
) -> Option<u64> {
    let mut limits = vec![headroom(&subscriber.account, standing.balance)];
    if let Some(cap) = subscriber.daily_spend_cap {
        limits.push(cap - standing.spend_today);
    }
    if let Some(cap) = subscriber.monthly_spend_cap {
        limits.push(cap - standing.spend_month);
    }
    limits
        .into_iter()
        .filter_map(|funds| seconds_affordable(funds, price_per_second))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn sub(status: SubscriberStatus, account: Account) -> Subscriber {
        Subscriber {
            id: 1,
            name: "Ada".into(),
            status,
            email: "ada@example.net".into(),
            time_zone: chrono_tz::Europe::Berlin,
            plan: "standard".into(),
            currency: "EUR".parse().unwrap(),
            account,
            daily_spend_cap: Some(dec!(5)),
            monthly_spend_cap: Some(dec!(50)),
            max_concurrent_calls: Some(2),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn standing(balance: Decimal, today: Decimal, month: Decimal, calls: u32) -> Standing {
        Standing {
            balance,
            spend_today: today,
            spend_month: month,
            active_calls: calls,
        }
    }

    #[test]
    fn authorization_table() {
        use RefusalKind::*;
        use SubscriberStatus as S;
        let pre = Account::Prepaid;
        let post = Account::Postpaid {
            credit_limit: dec!(20),
        };
        let fine = standing(dec!(10), dec!(1), dec!(10), 0);
        // (subscriber, standing, expected: None = allowed, Some(kind, status))
        type Case = (Option<Subscriber>, Standing, Option<(RefusalKind, u16)>);
        let cases: Vec<Case> = vec![
            (None, fine, Some((UnknownNumber, 404))),
            (Some(sub(S::Active, pre)), fine, None),
            (Some(sub(S::Suspended, pre)), fine, Some((Suspended, 403))),
            (Some(sub(S::Closed, pre)), fine, Some((Closed, 403))),
            // Status comes before money.
            (
                Some(sub(S::Suspended, pre)),
                standing(dec!(0), dec!(0), dec!(0), 0),
                Some((Suspended, 403)),
            ),
            // Prepaid: zero or below is no funds; a cent is enough.
            (
                Some(sub(S::Active, pre)),
                standing(dec!(0), dec!(0), dec!(0), 0),
                Some((NoFunds, 402)),
            ),
            (
                Some(sub(S::Active, pre)),
                standing(dec!(-0.01), dec!(0), dec!(0), 0),
                Some((NoFunds, 402)),
            ),
            (
                Some(sub(S::Active, pre)),
                standing(dec!(0.01), dec!(0), dec!(0), 0),
                None,
            ),
            // Postpaid: down to the credit limit.
            (
                Some(sub(S::Active, post)),
                standing(dec!(-19.99), dec!(0), dec!(0), 0),
                None,
            ),
            (
                Some(sub(S::Active, post)),
                standing(dec!(-20), dec!(0), dec!(0), 0),
                Some((NoFunds, 402)),
            ),
            (
                Some(sub(S::Active, post)),
                standing(dec!(-25), dec!(0), dec!(0), 0),
                Some((NoFunds, 402)),
            ),
            // Caps: reaching them refuses.
            (
                Some(sub(S::Active, pre)),
                standing(dec!(10), dec!(4.99), dec!(10), 0),
                None,
            ),
            (
                Some(sub(S::Active, pre)),
                standing(dec!(10), dec!(5), dec!(10), 0),
                Some((DailyCap, 403)),
            ),
            (
                Some(sub(S::Active, pre)),
                standing(dec!(10), dec!(1), dec!(50), 0),
                Some((MonthlyCap, 403)),
            ),
            // Concurrent calls: two in progress with a cap of two.
            (
                Some(sub(S::Active, pre)),
                standing(dec!(10), dec!(1), dec!(10), 1),
                None,
            ),
            (
                Some(sub(S::Active, pre)),
                standing(dec!(10), dec!(1), dec!(10), 2),
                Some((ConcurrentCalls, 486)),
            ),
        ];
        for (i, (s, st, want)) in cases.into_iter().enumerate() {
            let got = authorize(s.as_ref(), &st).map_err(|r| (r.kind, r.status));
            assert_eq!(got.err(), want, "case {i}");
        }
        // Without caps, none of the cap refusals happen.
        let mut free = sub(S::Active, pre);
        free.daily_spend_cap = None;
        free.monthly_spend_cap = None;
        free.max_concurrent_calls = None;
        assert!(authorize(Some(&free), &standing(dec!(1), dec!(999), dec!(999), 999)).is_ok());
        // The reason names the limit.
        let r = authorize(
            Some(&sub(S::Active, pre)),
            &standing(dec!(10), dec!(5), dec!(5), 0),
        )
        .unwrap_err();
        assert!(
            r.reason.contains("daily spend cap of 5 EUR"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn call_duration_limits() {
        assert_eq!(seconds_affordable(dec!(1), dec!(0.003)), Some(333));
        assert_eq!(seconds_affordable(dec!(0.002), dec!(0.003)), Some(0));
        assert_eq!(seconds_affordable(dec!(-1), dec!(0.003)), Some(0));
        assert_eq!(seconds_affordable(dec!(1), dec!(0)), None);
        assert_eq!(seconds_affordable(dec!(0.9), dec!(0.0001)), Some(9000));
        let pre = sub(SubscriberStatus::Active, Account::Prepaid);
        // Balance 1.00 at 0.01/s: 100 s; daily cap leaves 5 - 4.5 = 0.5: 50 s.
        assert_eq!(
            max_call_seconds(&pre, &standing(dec!(1), dec!(4.5), dec!(10), 0), dec!(0.01)),
            Some(50)
        );
        assert_eq!(
            max_call_seconds(&pre, &standing(dec!(1), dec!(0), dec!(0), 0), dec!(0.01)),
            Some(100)
        );
        let post = sub(
            SubscriberStatus::Active,
            Account::Postpaid {
                credit_limit: dec!(2),
            },
        );
        // Postpaid balance -1 with limit 2: 1.00 left: 100 s.
        assert_eq!(
            max_call_seconds(&post, &standing(dec!(-1), dec!(0), dec!(0), 0), dec!(0.01)),
            Some(100)
        );
        assert_eq!(
            max_call_seconds(&post, &standing(dec!(-1), dec!(0), dec!(0), 0), dec!(0)),
            None
        );
    }
}
