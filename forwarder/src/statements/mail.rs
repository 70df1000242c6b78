//! Sending stored messages: SMTP (lettre, rustls; STARTTLS or implicit TLS,
//! AUTH) or, for a single machine, `.eml` files in a directory.
//!
//! A message is sent as the stored bytes (`send_raw`), so a retry repeats
//! the very same message with the same Message-ID. `Ok` means the server
//! answered 250 to the end of DATA (or the file was written and synced).

use super::config::{MailSettings, SmtpSettings, TlsMode, Transport};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::{Path, PathBuf};

/// Parses `Name <a@b>` or `a@b`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    s.parse::<Mailbox>().map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Settings that cannot work (a bad root file, an unreadable password file).
    #[error("mail settings: {0}")]
    Settings(String),
    /// This attempt failed; a later one may succeed.
    #[error("{0}")]
    Send(String),
}

enum Inner {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf),
}

/// A ready transport.
pub struct Mailer {
    inner: Inner,
    /// Longest one message may take, all commands included: lettre's own
    /// timeout bounds the connection, not a server that stops answering.
    deadline: std::time::Duration,
    from: Mailbox,
    operator: Option<Mailbox>,
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> Result<Mailer, MailError> {
        let from = parse_mailbox(&settings.from).map_err(MailError::Settings)?;
        let operator = settings
            .operator
            .as_deref()
            .map(parse_mailbox)
            .transpose()
            .map_err(MailError::Settings)?;
        let inner = match &settings.transport {
            Transport::File(dir) => Inner::File(dir.clone()),
            Transport::Smtp(smtp) => Inner::Smtp(smtp_transport(smtp, settings)?),
        };
        Ok(Mailer {
            inner,
            deadline: settings.timeout.saturating_mul(4),
            from,
            operator,
        })
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    pub fn operator(&self) -> Option<&Mailbox> {
        self.operator.as_ref()
    }

    /// Sends a stored message to `recipient`.
    pub async fn send(
        &self,
        recipient: &str,
        message_id: &str,
        message: &[u8],
    ) -> Result<(), MailError> {
        let to: Address = recipient
            .parse()
            .map_err(|e| MailError::Send(format!("recipient {recipient:?}: {e}")))?;
        match &self.inner {
            Inner::Smtp(t) => {
                let envelope =
                    lettre::address::Envelope::new(Some(self.from.email.clone()), vec![to])
                        .map_err(|e| MailError::Send(e.to_string()))?;
                match tokio::time::timeout(self.deadline, t.send_raw(&envelope, message)).await {
                    Ok(r) => r.map(|_| ()).map_err(|e| MailError::Send(smtp_error(&e))),
                    Err(_) => Err(MailError::Send(format!(
                        "the mail server did not finish within {} s",
                        self.deadline.as_secs()
                    ))),
                }
            }
            Inner::File(dir) => {
                let dir = dir.clone();
                let name = file_name(message_id);
                let bytes = message.to_vec();
                tokio::task::spawn_blocking(move || write_file(&dir, &name, &bytes))
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?
            }
        }
    }
}

/// lettre's errors, with the server's answer when there is one.
fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn smtp_transport(
    smtp: &SmtpSettings,
    settings: &MailSettings,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let tls = match smtp.tls {
        TlsMode::None => Tls::None,
        mode => {
            let mut params = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &smtp.tls_roots {
                let pem = std::fs::read(path).map_err(|e| {
                    MailError::Settings(format!("tls_roots {}: {e}", path.display()))
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    MailError::Settings(format!("tls_roots {}: {e}", path.display()))
                })?;
                params = params
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| MailError::Settings(format!("TLS: {e}")))?;
            match mode {
                TlsMode::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            }
        }
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(settings.timeout));
    if let Some(user) = &smtp.username {
        let password = match (&smtp.password, &smtp.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| MailError::Settings(format!("password_file {}: {e}", f.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            (None, None) => {
                return Err(MailError::Settings(
                    "username is set but no password (FORWARDER_SMTP_PASSWORD or password_file)"
                        .into(),
                ))
            }
        };
        b = b.credentials(Credentials::new(user.clone(), password));
    }
    let pool = lettre::transport::smtp::PoolConfig::new().max_size(settings.concurrency as u32);
    Ok(b.pool_config(pool).build())
}

/// A file name from a Message-ID: only safe characters.
fn file_name(message_id: &str) -> String {
    let base: String = message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '@' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}.eml")
}

/// Writes atomically (temporary file, sync, rename): a file is whole or absent.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MailError> {
    use std::io::Write;
    let err = |e: std::io::Error| MailError::Send(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, dir.join(name)).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_are_safe() {
        assert_eq!(
            super::file_name("<statement.1.2@example.net>"),
            "statement.1.2@example.net.eml"
        );
        assert_eq!(super::file_name("<../../x y>"), ".._.._x_y.eml");
    }
}
