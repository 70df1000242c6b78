//! `[statements]` (the schedule) and `[mail]` (how statements are sent).
//!
//! ```toml
//! [statements]
//! schedule = "0 0 2 1 * *"     # cron: sec min hour day-of-month month day-of-week,
//!                              # in each subscriber's time zone (here: the 1st at 02:00)
//! settle_secs = 300            # a period is issued this long after it ends
//! check_every_secs = 60        # how often `forwarder serve` looks for due work
//! retry_first_secs = 60        # SMTP failure: retry after 1 min, doubling ...
//! retry_max_secs = 3600        # ... up to 1 h, for ever (the statement stays `failed`)
//! [statements.destination_types]   # longest prefix of the forwarded-to number
//! "49" = "Germany"
//! "4915" = "German mobile"
//!
//! [mail]
//! transport = "smtp"           # or "file": one .eml per message in `directory`
//! host = "smtp.example.net"
//! port = 587                   # default: 587 for starttls, 465 for implicit, 25 for none
//! tls = "starttls"             # or "implicit" (SMTPS); "none" only to a loopback host
//! username = "statements"      # password: FORWARDER_SMTP_PASSWORD or password_file
//! password_file = "/run/secrets/smtp"
//! tls_roots = "private-ca.pem" # only these roots (default: the system's)
//! from = "Home Telecom <billing@example.net>"
//! operator = "noc@example.net" # told when a statement is held back
//! timeout_secs = 30
//! concurrency = 4              # messages in flight
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The `[statements]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementsSection {
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    #[serde(default = "default_check")]
    pub check_every_secs: u64,
    #[serde(default = "default_retry_first")]
    pub retry_first_secs: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    #[serde(default)]
    pub destination_types: BTreeMap<String, String>,
}

impl Default for StatementsSection {
    fn default() -> Self {
        StatementsSection {
            schedule: default_schedule(),
            settle_secs: default_settle(),
            check_every_secs: default_check(),
            retry_first_secs: default_retry_first(),
            retry_max_secs: default_retry_max(),
            destination_types: BTreeMap::new(),
        }
    }
}

fn default_schedule() -> String {
    "0 0 2 1 * *".into()
}
fn default_settle() -> u64 {
    300
}
fn default_check() -> u64 {
    60
}
fn default_retry_first() -> u64 {
    60
}
fn default_retry_max() -> u64 {
    3600
}

/// A cron expression checked once (`cron` crate syntax: seconds first).
#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
    parsed: cron::Schedule,
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let parsed = cron::Schedule::from_str(s.trim()).map_err(|e| {
            format!("schedule {s:?} is not a cron expression (sec min hour day month weekday): {e}")
        })?;
        Ok(Schedule {
            source: s.trim().to_string(),
            parsed,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn cron(&self) -> &cron::Schedule {
        &self.parsed
    }
}

/// Effective statement settings.
#[derive(Debug, Clone)]
pub struct StatementSettings {
    pub schedule: Schedule,
    pub settle: Duration,
    pub check_every: Duration,
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// Prefix (digits) → name, matched longest first; unmatched: "other".
    pub destination_types: Vec<(String, String)>,
}

impl StatementsSection {
    pub fn resolve(self) -> Result<StatementSettings, String> {
        let schedule = Schedule::parse(&self.schedule)?;
        if self.check_every_secs == 0 || self.retry_first_secs == 0 {
            return Err("check_every_secs and retry_first_secs must be > 0".into());
        }
        if self.retry_max_secs < self.retry_first_secs {
            return Err("retry_max_secs must be at least retry_first_secs".into());
        }
        let mut destination_types = Vec::new();
        for (prefix, name) in self.destination_types {
            let digits = prefix.trim_start_matches('+');
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 15
            {
                return Err(format!(
                    "destination_types: {prefix:?} is not a number prefix"
                ));
            }
            if name.trim().is_empty() || name.chars().any(char::is_control) || name.len() > 100 {
                return Err(format!("destination_types: bad name for {prefix:?}"));
            }
            destination_types.push((digits.to_string(), name.trim().to_string()));
        }
        // Longest prefix first, so the first match is the most specific.
        destination_types.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(StatementSettings {
            schedule,
            settle: Duration::from_secs(self.settle_secs),
            check_every: Duration::from_secs(self.check_every_secs),
            retry_first: Duration::from_secs(self.retry_first_secs),
            retry_max: Duration::from_secs(self.retry_max_secs),
            destination_types,
        })
    }
}

impl StatementSettings {
    /// The destination type of a forwarded-to number (digits without '+').
    pub fn destination_type(&self, digits: &str) -> &str {
        self.destination_types
            .iter()
            .find(|(p, _)| digits.starts_with(p.as_str()))
            .map_or("other", |(_, n)| n.as_str())
    }
}

/// How mail leaves the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Smtp,
    File,
}

/// TLS towards the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS (required, never skipped).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No TLS: only to a loopback address.
    None,
}

/// The `[mail]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    #[serde(default)]
    pub transport: Option<TransportKind>,
    pub directory: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Option<TlsMode>,
    pub username: Option<String>,
    /// Refused with a clear message: secrets do not belong in the file.
    pub password: Option<toml::Value>,
    pub password_file: Option<PathBuf>,
    pub tls_roots: Option<PathBuf>,
    pub from: Option<String>,
    pub operator: Option<String>,
    pub timeout_secs: Option<u64>,
    pub concurrency: Option<usize>,
}

/// Where the SMTP server is and how to talk to it.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_roots: Option<PathBuf>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The transport chosen.
#[derive(Debug, Clone)]
pub enum Transport {
    Smtp(SmtpSettings),
    /// One `.eml` file per message (named after its Message-ID).
    File(PathBuf),
}

/// Effective mail settings.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub transport: Transport,
    pub from: String,
    pub operator: Option<String>,
    pub timeout: Duration,
    pub concurrency: usize,
}

impl MailSettings {
    /// The single-machine default: files in `DIR/outbox`.
    pub fn defaults(data_dir: &Path) -> MailSettings {
        MailSettings {
            transport: Transport::File(data_dir.join("outbox")),
            from: "statements@localhost".into(),
            operator: None,
            timeout: Duration::from_secs(30),
            concurrency: 4,
        }
    }
}

impl MailSection {
    pub fn resolve(self, data_dir: &Path) -> Result<MailSettings, String> {
        if self.password.is_some() {
            return Err("mail: no password in the config file; set FORWARDER_SMTP_PASSWORD or password_file".into());
        }
        let at = |p: PathBuf| if p.is_absolute() { p } else { data_dir.join(p) };
        let kind = self.transport.unwrap_or(if self.host.is_some() {
            TransportKind::Smtp
        } else {
            TransportKind::File
        });
        let transport = match kind {
            TransportKind::File => {
                if self.host.is_some() || self.username.is_some() {
                    return Err("mail: host/username are for transport = \"smtp\"".into());
                }
                Transport::File(at(self
                    .directory
                    .unwrap_or_else(|| PathBuf::from("outbox"))))
            }
            TransportKind::Smtp => {
                let host = self
                    .host
                    .filter(|h| !h.trim().is_empty())
                    .ok_or("mail: transport = \"smtp\" needs host")?;
                let tls = self.tls.unwrap_or(TlsMode::Starttls);
                if tls == TlsMode::None && !is_loopback(&host) {
                    return Err(format!(
                        "mail: tls = \"none\" is only allowed to a loopback host, not {host:?}"
                    ));
                }
                let port = self.port.unwrap_or(match tls {
                    TlsMode::Starttls => 587,
                    TlsMode::Implicit => 465,
                    TlsMode::None => 25,
                });
                Transport::Smtp(SmtpSettings {
                    host,
                    port,
                    tls,
                    username: self.username,
                    password: None,
                    password_file: self.password_file.map(at),
                    tls_roots: self.tls_roots.map(at),
                })
            }
        };
        let from = self.from.unwrap_or_else(|| "statements@localhost".into());
        crate::statements::mail::parse_mailbox(&from).map_err(|e| format!("mail: from: {e}"))?;
        if let Some(op) = &self.operator {
            crate::statements::mail::parse_mailbox(op)
                .map_err(|e| format!("mail: operator: {e}"))?;
        }
        let concurrency = self.concurrency.unwrap_or(4);
        if concurrency == 0 || concurrency > 64 {
            return Err("mail: concurrency must be 1 to 64".into());
        }
        Ok(MailSettings {
            transport,
            from,
            operator: self.operator,
            timeout: Duration::from_secs(self.timeout_secs.unwrap_or(30).max(1)),
            concurrency,
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(text: &str) -> Result<MailSettings, String> {
        let s: MailSection = toml::from_str(text).map_err(|e| e.to_string())?;
        s.resolve(Path::new("/data"))
    }

    #[test]
    fn mail_settings() {
        let m = mail("host = \"smtp.example.net\"\nfrom = \"Billing <b@example.net>\"").unwrap();
        match m.transport {
            Transport::Smtp(s) => {
                assert_eq!((s.port, s.tls), (587, TlsMode::Starttls));
            }
            Transport::File(_) => panic!("smtp expected"),
        }
        let m = mail("").unwrap();
        assert!(matches!(m.transport, Transport::File(p) if p == Path::new("/data/outbox")));
        assert!(mail("host = \"smtp.example.net\"\ntls = \"none\"")
            .unwrap_err()
            .contains("loopback"));
        assert!(mail("host = \"127.0.0.1\"\ntls = \"none\"").is_ok());
        assert!(mail("host = \"h\"\npassword = \"secret\"")
            .unwrap_err()
            .contains("FORWARDER_SMTP_PASSWORD"));
        assert!(mail("from = \"not an address\"").is_err());
        assert!(mail("transport = \"pigeon\"").is_err());
    }

    #[test]
    fn statement_settings() {
        let s: StatementsSection = toml::from_str(
            "schedule = \"0 0 2 1 * *\"\n[destination_types]\n\"49\" = \"Germany\"\n\"+4915\" = \"German mobile\"",
        )
        .unwrap();
        let s = s.resolve().unwrap();
        assert_eq!(s.destination_type("4915112345"), "German mobile");
        assert_eq!(s.destination_type("493012345"), "Germany");
        assert_eq!(s.destination_type("4412345"), "other");
        let bad: StatementsSection = toml::from_str("schedule = \"monthly\"").unwrap();
        assert!(bad.resolve().is_err());
        let bad: StatementsSection = toml::from_str("[destination_types]\n\"4x\" = \"y\"").unwrap();
        assert!(bad.resolve().is_err());
    }
}
