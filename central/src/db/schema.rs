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

diesel::joinable!(certificates -> providers (provider_id));
diesel::joinable!(rate_versions -> providers (provider_id));
diesel::joinable!(rate_entries -> providers (provider_id));
diesel::allow_tables_to_appear_in_same_query!(providers, certificates, rate_versions, rate_entries);
