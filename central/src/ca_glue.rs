//! Small conversions between the CA's types and central's storage types.

use chrono::{DateTime, Utc};

pub fn to_chrono(t: DateTime<Utc>) -> DateTime<Utc> {
    t
}

pub fn subject_cn(issued: &crate::interim_pki::IssuedCert) -> String {
    issued.subject_cn.clone()
}
