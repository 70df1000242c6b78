//! Table definitions shared by both backends (see `migrations/`).

diesel::table! {
    providers (id) {
        id -> BigInt,
        name -> Text,
        sip_addresses -> Text,
        currency -> Text,
        contact -> Text,
        status -> Text,
        enrollment_token_hash -> Nullable<Text>,
        rate_version -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    certificates (key_id) {
        key_id -> Text,
        serial -> Text,
        role -> Text,
        provider_id -> Nullable<BigInt>,
        subject_cn -> Text,
        cert_pem -> Text,
        not_before -> BigInt,
        not_after -> BigInt,
        revoked_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    rate_versions (id) {
        id -> BigInt,
        provider_id -> BigInt,
        version -> BigInt,
        uploaded_at -> BigInt,
        kind -> Text,
        line_count -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::money::Money;

    rate_entries (id) {
        id -> BigInt,
        provider_id -> BigInt,
        prefix -> Text,
        rate_per_minute -> Money,
        connect_fee -> Money,
        first_increment -> Integer,
        next_increment -> Integer,
        effective_from -> Nullable<BigInt>,
        description -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::money::Money;

    tickets (ticket_id) {
        ticket_id -> Text,
        payer_id -> BigInt,
        provider_id -> BigInt,
        orig -> Text,
        dest -> Text,
        call_id -> Text,
        per_minute -> Money,
        connect_fee -> Money,
        first_increment -> Integer,
        next_increment -> Integer,
        currency -> Text,
        rate_version -> BigInt,
        issued_at -> BigInt,
        expires_at -> BigInt,
        status -> Text,
        answer_at -> BigInt,
        end_at -> BigInt,
        billable_seconds -> BigInt,
        amount -> Money,
        payer_answer_at -> Nullable<BigInt>,
        payer_end_at -> Nullable<BigInt>,
        payer_billable_seconds -> Nullable<BigInt>,
        provider_answer_at -> BigInt,
        provider_end_at -> BigInt,
        provider_billable_seconds -> BigInt,
        ticket_token -> Text,
        payer_receipt_token -> Nullable<Text>,
        provider_receipt_token -> Text,
        submission_sha256 -> Text,
        submitted_at -> BigInt,
        submitted_by -> Text,
    }
}

diesel::joinable!(certificates -> providers (provider_id));
diesel::joinable!(rate_versions -> providers (provider_id));
diesel::joinable!(rate_entries -> providers (provider_id));
diesel::allow_tables_to_appear_in_same_query!(
    providers,
    certificates,
    rate_versions,
    rate_entries,
    tickets
);
