//! Sending stored messages: SMTP (lettre, rustls; STARTTLS or implicit TLS,
//! AUTH; see [`super::smtp`]) or, for a single machine, `.eml` files in a
//! directory.
//!
//! A message is sent as the stored bytes, so a retry repeats
//! the very same message with the same Message-ID. `Ok` means the server
//! answered 250 to the end of DATA (or the file was written and synced).

use super::config::{MailSettings, SmtpSettings, Transport};
use super::smtp::SmtpClient;
use lettre::message::Mailbox;
use lettre::Address;
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
    Smtp(SmtpClient),
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
            Transport::Smtp(smtp) => Inner::Smtp(SmtpClient::new(
                smtp,
                password(smtp)?,
                settings.timeout,
                settings.concurrency,
            )?),
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
                match tokio::time::timeout(self.deadline, t.send(&envelope, message)).await {
                    Ok(r) => r,
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

/// The SMTP password: from the environment (set by the loader) or a file.
fn password(smtp: &SmtpSettings) -> Result<Option<String>, MailError> {
    match (&smtp.password, &smtp.password_file) {
        (Some(p), _) => Ok(Some(p.clone())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|p| Some(p.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|e| MailError::Settings(format!("password_file {}: {e}", f.display()))),
        (None, None) => Ok(None),
    }
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
