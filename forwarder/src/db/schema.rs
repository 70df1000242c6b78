//! Table definitions shared by both backends (see `migrations/forwarder/`).

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::money::Money;

    subscribers (id) {
        id -> BigInt,
        name -> Text,
        status -> Text,
        email -> Text,
        time_zone -> Text,
        plan -> Text,
        currency -> Text,
        account_kind -> Text,
        credit_limit -> Nullable<Money>,
        daily_spend_cap -> Nullable<Money>,
        monthly_spend_cap -> Nullable<Money>,
        max_concurrent_calls -> Nullable<Integer>,
        balance -> Money,
        created_at -> BigInt,
        updated_at -> BigInt,
        spend_day_from -> Nullable<BigInt>,
        spend_day -> Nullable<Money>,
        spend_month_from -> Nullable<BigInt>,
        spend_month -> Nullable<Money>,
    }
}

diesel::table! {
    numbers (number) {
        number -> Text,
        subscriber_id -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    forwarding_rules (id) {
        id -> BigInt,
        subscriber_id -> BigInt,
        position -> Integer,
        body -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::money::Money;

    ledger_entries (id) {
        id -> BigInt,
        subscriber_id -> BigInt,
        kind -> Text,
        amount -> Money,
        currency -> Text,
        reason -> Nullable<Text>,
        cdr_id -> Nullable<Text>,
        idempotency_key -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::money::Money;

    cdrs (id) {
        id -> Text,
        subscriber_id -> BigInt,
        called_number -> Text,
        caller_number -> Nullable<Text>,
        caller_name -> Nullable<Text>,
        target -> Nullable<Text>,
        status -> Text,
        received_at -> BigInt,
        answered_at -> Nullable<BigInt>,
        ended_at -> Nullable<BigInt>,
        last_media_at -> Nullable<BigInt>,
        sip_status -> Nullable<Integer>,
        hangup_cause -> Nullable<Text>,
        provider_id -> Nullable<BigInt>,
        provider_name -> Nullable<Text>,
        decision -> Nullable<Text>,
        attempts -> Nullable<Text>,
        billable_seconds -> Nullable<BigInt>,
        media_stats -> Nullable<Text>,
        price -> Nullable<Money>,
        provider_cost -> Nullable<Money>,
        margin -> Nullable<Money>,
        rating_currency -> Nullable<Text>,
        ticket_id -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    subscriber_tokens (token_hash) {
        token_hash -> Text,
        subscriber_id -> BigInt,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    operator_certificates (key_id) {
        key_id -> Text,
        serial -> Text,
        subject_cn -> Text,
        cert_pem -> Text,
        not_after -> BigInt,
        revoked_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::money::Money;

    statements (id) {
        id -> BigInt,
        subscriber_id -> BigInt,
        period_start -> BigInt,
        period_end -> BigInt,
        currency -> Text,
        opening_balance -> Money,
        closing_balance -> Money,
        summary -> Text,
        recipient -> Text,
        message_id -> Text,
        message -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    statement_schedules (subscriber_id) {
        subscriber_id -> BigInt,
        schedule -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    statement_holds (subscriber_id, period_start) {
        subscriber_id -> BigInt,
        period_start -> BigInt,
        period_end -> BigInt,
        reason -> Text,
        first_seen_at -> BigInt,
        last_seen_at -> BigInt,
        notified_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(statements -> subscribers (subscriber_id));
diesel::joinable!(numbers -> subscribers (subscriber_id));
diesel::joinable!(forwarding_rules -> subscribers (subscriber_id));
diesel::joinable!(ledger_entries -> subscribers (subscriber_id));
diesel::joinable!(cdrs -> subscribers (subscriber_id));
diesel::joinable!(subscriber_tokens -> subscribers (subscriber_id));
diesel::allow_tables_to_appear_in_same_query!(
    subscribers,
    numbers,
    forwarding_rules,
    ledger_entries,
    cdrs,
    subscriber_tokens,
    operator_certificates,
    statements,
    statement_schedules,
    statement_holds,
);
