//! Rate-change notifications between central instances sharing one
//! PostgreSQL database: after a rate change commits, [`announce`] sends
//! `NOTIFY central_rates`; every instance runs [`spawn_listener`], a thread
//! with its own connection that LISTENs (reconnecting when the connection
//! drops) and calls back on each notification. SQLite deployments are single
//! instance: both are no-ops there.

use crate::db::{Backend, Database, DbConnection};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const CHANNEL: &str = "central_rates";
/// How often the listener polls its socket: well under the one-second
/// propagation goal.
const POLL: Duration = Duration::from_millis(100);
const RECONNECT: Duration = Duration::from_secs(1);

/// Tells other instances that rate tables changed (PostgreSQL only).
pub fn announce(conn: &mut DbConnection) -> Result<(), diesel::result::Error> {
    if let DbConnection::Postgres(c) = conn {
        c.batch_execute(&format!("NOTIFY {CHANNEL}"))?;
    }
    Ok(())
}

/// Stops the listener thread when dropped.
#[derive(Debug)]
pub struct ListenerGuard {
    stop: Arc<AtomicBool>,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the LISTEN thread for a PostgreSQL database; `None` for SQLite.
pub fn spawn_listener(
    db: &Database,
    on_change: impl Fn() + Send + 'static,
) -> Option<ListenerGuard> {
    if db.backend() != Backend::Postgres {
        return None;
    }
    let url = db.url().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("central-listen".into())
        .spawn(move || listen_loop(&url, &stopped, &on_change));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the LISTEN thread");
        return None;
    }
    Some(ListenerGuard { stop })
}

fn listen_loop(url: &str, stop: &AtomicBool, on_change: &dyn Fn()) {
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match PgConnection::establish(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                std::thread::sleep(RECONNECT);
                continue;
            }
        };
        if let Err(e) = conn.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!(error = %e, "LISTEN failed; reconnecting");
            std::thread::sleep(RECONNECT);
            continue;
        }
        tracing::info!("listening for rate changes from other instances");
        // Changes made while we were disconnected were not announced to us.
        on_change();
        'poll: while !stop.load(Ordering::Relaxed) {
            let mut changed = false;
            for n in conn.notifications_iter() {
                match n {
                    Ok(_) => changed = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                        break 'poll;
                    }
                }
            }
            if changed {
                on_change();
            }
            std::thread::sleep(POLL);
        }
    }
}
