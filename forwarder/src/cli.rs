//! The command line: argument definitions and the operator commands, which
//! open the database named by the data directory's settings and print JSON.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use forwarder::app::{self, InitOptions};
use forwarder::config::Config;
use forwarder::db::{Database, DbConnection};
use forwarder::rules::{self, Rule, RuleSet};
use forwarder::store::cdrs::{self, CdrQuery};
use forwarder::store::ledger::{self, EntryKind, NewEntry};
use forwarder::store::{credentials, numbers, subscribers};
use forwarder::subscriber::{
    parse_time_zone, Account, NewSubscriber, SubscriberPatch, SubscriberStatus,
};
use provider_sdk::number::E164;
use rust_decimal::Decimal;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "forwarder",
    version,
    about = "The home provider's forwarder: subscribers, forwarding rules, accounts, call records and the HTTPS API",
    long_about = "The home provider's forwarder: subscribers, forwarding rules, accounts, call records and the HTTPS API.\n\n\
Settings come from DIR/forwarder.toml (or --config), overridden by the environment: \
FORWARDER_API_LISTEN, FORWARDER_DATABASE_URL, FORWARDER_MAX_BODY_BYTES, \
FORWARDER_REQUEST_TIMEOUT_SECS, FORWARDER_POOL_SIZE. Operator commands work on the \
database directly and print JSON. Logs go to stderr; RUST_LOG sets the level."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Global {
    /// Data directory made by `forwarder init` (default: the directory of --config).
    #[arg(long, value_name = "DIR", global = true, env = "FORWARDER_DATA")]
    pub data: Option<PathBuf>,
    /// Config file (default: DIR/forwarder.toml when present).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

impl Global {
    fn dir(&self) -> Result<PathBuf> {
        match (&self.data, &self.config) {
            (Some(d), _) => Ok(d.clone()),
            (None, Some(c)) => Ok(c
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf()),
            (None, None) => {
                bail!("say where the data directory is: --data DIR (or FORWARDER_DATA)")
            }
        }
    }

    pub fn config(&self) -> Result<Config> {
        let dir = self.dir()?;
        Config::load(&dir, self.config.as_deref())
            .with_context(|| format!("cannot load settings for {}", dir.display()))
    }

    fn database(&self) -> Result<Database> {
        let cfg = self.config()?;
        Database::open(&cfg.database_url, 1).context("cannot open the database")
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the database, the API's certificate authority, its TLS
    /// certificate and the operator's client credential in DIR.
    Init(InitArgs),
    /// Serve the HTTPS API until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Add, show, list, change, suspend, resume or close subscribers.
    #[command(subcommand)]
    Subscriber(SubscriberCmd),
    /// Assign numbers to subscribers, or remove them.
    #[command(subcommand)]
    Number(NumberCmd),
    /// Set or show a subscriber's forwarding rules.
    #[command(subcommand)]
    Rule(RuleCmd),
    /// Record payments, credits and adjustments; show balance and ledger.
    #[command(subcommand)]
    Account(AccountCmd),
    /// List or show call detail records.
    #[command(subcommand)]
    Cdr(CdrCmd),
    /// Issue credentials for the API.
    #[command(subcommand)]
    Credential(CredentialCmd),
    /// Billing statements: run, list, show, resend; held periods; schedules.
    #[command(subcommand)]
    Statements(StatementsCmd),
}

#[derive(Subcommand)]
pub enum StatementsCmd {
    /// Create every statement due and send what is unsent (the same run
    /// `forwarder serve` does on its schedule). Prints what it did.
    Run {
        /// Run as if it were this time (RFC 3339; default: now).
        #[arg(long)]
        now: Option<String>,
        /// Only this subscriber.
        #[arg(long)]
        subscriber: Option<i64>,
        /// Create and store the statements, send nothing.
        #[arg(long)]
        no_send: bool,
    },
    /// Statements, newest first.
    List {
        #[arg(long)]
        subscriber: Option<i64>,
        /// pending, sent or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One statement: its record (json), or a part of the stored message.
    Show {
        id: i64,
        #[arg(long, value_enum, default_value = "json")]
        format: ShowFormat,
    },
    /// Send a statement again now: the same message, same Message-ID.
    Resend { id: i64 },
    /// Periods held back (a call open or unrated) and why.
    Holds,
    /// Set a subscriber's own schedule (cron expression), or `none` for the
    /// deployment's.
    Schedule { subscriber: i64, schedule: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ShowFormat {
    Json,
    Text,
    Html,
    Csv,
    /// The whole message as sent (RFC 5322).
    Eml,
}

#[derive(Args)]
pub struct InitArgs {
    /// Common name of the API's root certificate.
    #[arg(long, default_value = "forwarder API root CA")]
    name: String,
    /// DNS name or IP address for the API's certificate (repeatable).
    #[arg(long = "server-name", value_name = "NAME", default_values_t = ["127.0.0.1".to_string(), "localhost".to_string()])]
    server_names: Vec<String>,
    /// API listen address to record in DIR/forwarder.toml.
    #[arg(long, value_name = "ADDR")]
    api_listen: Option<SocketAddr>,
    /// Database URL to record in DIR/forwarder.toml (postgres://... or a
    /// SQLite path; default: SQLite file in DIR).
    #[arg(
        long,
        value_name = "URL",
        env = "FORWARDER_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// API listen address (overrides config and FORWARDER_API_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
pub enum SubscriberCmd {
    /// Add a subscriber (active, balance zero).
    Add(SubscriberFields),
    /// Show one subscriber with its numbers, rules and balance.
    Show { id: i64 },
    /// List every subscriber.
    List,
    /// Change some fields of a subscriber.
    Change {
        id: i64,
        #[command(flatten)]
        fields: ChangeFields,
    },
    /// Refuse the subscriber's calls (403) until resumed.
    Suspend { id: i64 },
    /// Take the subscriber's calls again.
    Resume { id: i64 },
    /// Close the account for good (calls refused, cannot be resumed).
    Close { id: i64 },
}

#[derive(Args)]
pub struct SubscriberFields {
    #[arg(long)]
    name: String,
    #[arg(long)]
    email: String,
    /// IANA time zone, e.g. Europe/Berlin.
    #[arg(long)]
    time_zone: String,
    /// Plan name (plans are defined in the rating configuration).
    #[arg(long)]
    plan: String,
    /// ISO 4217 currency of the account, e.g. EUR.
    #[arg(long)]
    currency: String,
    /// Postpaid with this credit limit (default: prepaid).
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    credit_limit: Option<String>,
    /// Most call charges per local day.
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    daily_cap: Option<String>,
    /// Most call charges per local month.
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    monthly_cap: Option<String>,
    /// Most calls at the same time.
    #[arg(long, value_name = "N")]
    max_calls: Option<u32>,
}

#[derive(Args)]
pub struct ChangeFields {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    time_zone: Option<String>,
    #[arg(long)]
    plan: Option<String>,
    /// Make the account prepaid.
    #[arg(long, conflicts_with = "credit_limit")]
    prepaid: bool,
    /// Make the account postpaid with this credit limit.
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    credit_limit: Option<String>,
    /// New daily cap ("none" removes it).
    #[arg(long, value_name = "AMOUNT|none", allow_hyphen_values = true)]
    daily_cap: Option<String>,
    /// New monthly cap ("none" removes it).
    #[arg(long, value_name = "AMOUNT|none", allow_hyphen_values = true)]
    monthly_cap: Option<String>,
    /// New concurrent-call cap ("none" removes it).
    #[arg(long, value_name = "N|none")]
    max_calls: Option<String>,
}

#[derive(Subcommand)]
pub enum NumberCmd {
    /// Assign a number (E.164) to a subscriber.
    Add { subscriber: i64, number: String },
    /// Unassign a number.
    Remove { number: String },
    /// List a subscriber's numbers.
    List { subscriber: i64 },
}

#[derive(Subcommand)]
pub enum RuleCmd {
    /// Replace a subscriber's rules: from a JSON or TOML file
    /// ({"rules": [...]}), or one rule from flags.
    Set {
        subscriber: i64,
        /// Rules file (.json or .toml).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["target", "window", "name"])]
        file: Option<PathBuf>,
        /// Target NUMBER or NUMBER:RING_TIMEOUT_SECS, tried in order (repeatable).
        #[arg(long, value_name = "NUMBER[:SECS]")]
        target: Vec<String>,
        /// Time window such as "mon-fri 08:00-18:00" (repeatable; none: always).
        #[arg(long, value_name = "DAYS HH:MM-HH:MM")]
        window: Vec<String>,
        /// Name of the rule.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show a subscriber's rules.
    Show { subscriber: i64 },
}

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Record a payment (positive amount).
    Payment(EntryArgs),
    /// Record a credit (positive amount).
    Credit(EntryArgs),
    /// Record an adjustment (either sign; --reason is required).
    Adjust(EntryArgs),
    /// Show balance, spend and the latest ledger entries.
    Show {
        subscriber: i64,
        /// How many entries to show.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Args)]
pub struct EntryArgs {
    subscriber: i64,
    /// Decimal amount, e.g. 10.00 (adjustments may be negative: -2.50).
    #[arg(allow_hyphen_values = true)]
    amount: String,
    #[arg(long)]
    reason: Option<String>,
    /// Idempotency key: repeating the command with the same key records
    /// the entry once (default: a fresh key).
    #[arg(long)]
    key: Option<String>,
}

#[derive(Subcommand)]
pub enum CdrCmd {
    /// A subscriber's calls, newest first.
    List {
        subscriber: i64,
        /// Received at or after (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Received before (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One call record by id.
    Show { id: String },
}

#[derive(Subcommand)]
pub enum CredentialCmd {
    /// Issue a bearer token for a subscriber's API access (revokes its
    /// earlier tokens). The token is printed once and stored only hashed.
    Subscriber { id: i64 },
    /// Revoke every token of a subscriber (API access ends at once).
    RevokeSubscriber { id: i64 },
}

pub fn init(global: &Global, args: &InitArgs) -> Result<()> {
    let Some(dir) = &global.data else {
        bail!("init needs --data DIR (the directory to create)");
    };
    let opts = InitOptions {
        name: args.name.clone(),
        server_names: args.server_names.clone(),
        api_listen: args.api_listen,
        database_url: args.database_url.clone(),
    };
    let dd = app::init(dir, &opts)?;
    print(&serde_json::json!({
        "initialised": dd.dir,
        "root_certificate": dd.root_cert(),
        "operator_certificate": dd.operator_cert(),
        "operator_key": dd.operator_key(),
    }))
}

fn print<T: Serialize>(value: &T) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        // A reader that stopped reading (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn amount(what: &str, s: &str) -> Result<Decimal> {
    forwarder::amount::parse_unsigned(s).with_context(|| format!("{what} {s:?}"))
}

fn optional_amount(what: &str, s: Option<&str>) -> Result<Option<Decimal>> {
    s.map(|v| amount(what, v)).transpose()
}

/// `none` clears a limit; anything else is the new value.
fn clearable<T>(s: Option<&str>, parse: impl Fn(&str) -> Result<T>) -> Result<Option<Option<T>>> {
    match s {
        None => Ok(None),
        Some("none") => Ok(Some(None)),
        Some(v) => parse(v).map(|x| Some(Some(x))),
    }
}

fn parse_number(s: &str) -> Result<E164> {
    E164::parse(s).with_context(|| format!("number {s:?}"))
}

pub fn operator(global: &Global, command: Command) -> Result<()> {
    let db = global.database()?;
    let mut conn = db.conn()?;
    let conn = &mut *conn;
    let now = chrono::Utc::now();
    match command {
        Command::Init(_) | Command::Serve(_) => unreachable_command(),
        Command::Subscriber(cmd) => subscriber(conn, cmd, now),
        Command::Number(cmd) => match cmd {
            NumberCmd::Add { subscriber, number } => print(&numbers::add(
                conn,
                subscriber,
                &parse_number(&number)?,
                now,
            )?),
            NumberCmd::Remove { number } => print(&numbers::remove(conn, &parse_number(&number)?)?),
            NumberCmd::List { subscriber } => {
                subscribers::get(conn, subscriber)?;
                print(&numbers::of_subscriber(conn, subscriber)?)
            }
        },
        Command::Rule(cmd) => match cmd {
            RuleCmd::Set {
                subscriber,
                file,
                target,
                window,
                name,
            } => {
                let set = match file {
                    Some(path) => read_rules(&path)?,
                    None => {
                        if target.is_empty() {
                            bail!("give --file FILE, or at least one --target");
                        }
                        let targets = target
                            .iter()
                            .map(|t| rules::parse_target(t))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(anyhow::Error::msg)?;
                        let windows = window
                            .iter()
                            .map(|w| rules::parse_window(w))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(anyhow::Error::msg)?;
                        RuleSet {
                            rules: vec![Rule {
                                name,
                                targets,
                                windows,
                            }],
                        }
                    }
                };
                let stored = forwarder::store::rules::replace(conn, subscriber, &set.rules, now)?;
                print(&RuleSet { rules: stored })
            }
            RuleCmd::Show { subscriber } => print(&RuleSet {
                rules: forwarder::store::rules::get(conn, subscriber)?,
            }),
        },
        Command::Account(cmd) => account(conn, cmd, now),
        Command::Cdr(cmd) => match cmd {
            CdrCmd::List {
                subscriber,
                from,
                to,
                limit,
            } => {
                subscribers::get(conn, subscriber)?;
                let time = |s: Option<String>,
                            what: &str|
                 -> Result<Option<chrono::DateTime<chrono::Utc>>> {
                    s.map(|v| {
                        chrono::DateTime::parse_from_rfc3339(&v)
                            .map(|t| t.with_timezone(&chrono::Utc))
                            .with_context(|| format!("--{what} {v:?}: expected an RFC 3339 time"))
                    })
                    .transpose()
                };
                let q = CdrQuery {
                    from: time(from, "from")?,
                    to: time(to, "to")?,
                    after: None,
                    limit: limit.clamp(1, 10_000_000),
                };
                print(&cdrs::list(conn, subscriber, &q)?)
            }
            CdrCmd::Show { id } => {
                let id = uuid::Uuid::try_parse(&id).with_context(|| format!("call id {id:?}"))?;
                print(&cdrs::get(conn, id)?)
            }
        },
        Command::Statements(cmd) => statements(global, conn, cmd, now),
        Command::Credential(CredentialCmd::Subscriber { id }) => {
            let token = credentials::issue_subscriber_token(conn, id, now)?;
            print(&serde_json::json!({ "subscriber_id": id, "token": token }))
        }
        Command::Credential(CredentialCmd::RevokeSubscriber { id }) => {
            subscribers::get(conn, id)?;
            let revoked = credentials::revoke_subscriber_tokens(conn, id, now)?;
            print(&serde_json::json!({ "subscriber_id": id, "revoked_tokens": revoked }))
        }
    }
}

fn statements(
    global: &Global,
    conn: &mut DbConnection,
    cmd: StatementsCmd,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    use forwarder::statements::{self as st, config::Schedule, mail::Mailer, render};
    use forwarder::store::statements::{self as stored, StatementQuery, StatementStatus};
    match cmd {
        StatementsCmd::Run {
            now: at,
            subscriber,
            no_send,
        } => {
            let cfg = global.config()?;
            let at = match at {
                Some(v) => chrono::DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .with_context(|| format!("--now {v:?}: expected an RFC 3339 time"))?,
                None => now,
            };
            let settings = cfg.statements.clone().unwrap_or(
                forwarder::statements::config::StatementsSection::default()
                    .resolve()
                    .map_err(anyhow::Error::msg)?,
            );
            let scope = subscriber.map_or(st::Scope::All, st::Scope::One);
            let concurrency = cfg.mail.concurrency;
            let db = Database::open(&cfg.database_url, concurrency as u32 + 2)
                .context("cannot open the database")?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let report = rt.block_on(async {
                let mailer = std::sync::Arc::new(Mailer::new(&cfg.mail)?);
                let r =
                    st::run_once(&db, mailer, &settings, concurrency, at, scope, !no_send).await?;
                Ok::<_, anyhow::Error>(r)
            })?;
            let failed = report.delivered.failed.len();
            print(&report)?;
            if failed > 0 {
                bail!("{failed} statement(s) not sent: they are retried by the next run");
            }
            Ok(())
        }
        StatementsCmd::List {
            subscriber,
            status,
            limit,
        } => {
            let status = match status.as_deref() {
                None => None,
                Some("pending") => Some(StatementStatus::Pending),
                Some("sent") => Some(StatementStatus::Sent),
                Some("failed") => Some(StatementStatus::Failed),
                Some(o) => bail!("--status {o:?}: pending, sent or failed"),
            };
            print(&stored::list(
                conn,
                &StatementQuery {
                    subscriber_id: subscriber,
                    status,
                    before: None,
                    limit: limit.clamp(1, 100_000),
                },
            )?)
        }
        StatementsCmd::Show { id, format } => {
            if let ShowFormat::Json = format {
                return print(&stored::get(conn, id)?);
            }
            let message = stored::message(conn, id)?;
            let out = match format {
                ShowFormat::Eml => Some(message),
                other => {
                    let p = render::parts(&message)?;
                    match other {
                        ShowFormat::Text => p.text,
                        ShowFormat::Html => p.html,
                        _ => p.csv,
                    }
                }
            };
            let out = out.context("the stored message has no such part")?;
            use std::io::Write;
            std::io::stdout().write_all(out.as_bytes())?;
            Ok(())
        }
        StatementsCmd::Resend { id } => print(&stored::resend(conn, id, now)?),
        StatementsCmd::Holds => print(&stored::holds(conn)?),
        StatementsCmd::Schedule {
            subscriber,
            schedule,
        } => {
            let value = match schedule.trim() {
                "none" => None,
                expr => Some(Schedule::parse(expr).map_err(anyhow::Error::msg)?),
            };
            stored::set_schedule(conn, subscriber, value.as_ref().map(Schedule::source), now)?;
            print(&serde_json::json!({
                "subscriber_id": subscriber,
                "schedule": value.as_ref().map(Schedule::source),
            }))
        }
    }
}

fn unreachable_command() -> Result<()> {
    bail!("this command is not an operator command")
}

fn subscriber(
    conn: &mut DbConnection,
    cmd: SubscriberCmd,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    match cmd {
        SubscriberCmd::Add(f) => {
            let new = NewSubscriber {
                name: f.name,
                email: f.email,
                time_zone: parse_time_zone(&f.time_zone)?,
                plan: f.plan,
                currency: f.currency.parse()?,
                account: match f.credit_limit {
                    None => Account::Prepaid,
                    Some(l) => Account::Postpaid {
                        credit_limit: amount("--credit-limit", &l)?,
                    },
                },
                daily_spend_cap: optional_amount("--daily-cap", f.daily_cap.as_deref())?,
                monthly_spend_cap: optional_amount("--monthly-cap", f.monthly_cap.as_deref())?,
                max_concurrent_calls: f.max_calls,
            };
            new.validate()?;
            print(&subscribers::add(conn, &new, now)?)
        }
        SubscriberCmd::Show { id } => {
            let s = subscribers::get(conn, id)?;
            let standing = ledger::standing(conn, &s, now)?;
            print(&serde_json::json!({
                "subscriber": s,
                "numbers": numbers::of_subscriber(conn, id)?,
                "rules": forwarder::store::rules::get(conn, id)?,
                "standing": standing,
            }))
        }
        SubscriberCmd::List => print(&subscribers::list(conn)?),
        SubscriberCmd::Change { id, fields: f } => {
            let account = match (f.prepaid, f.credit_limit) {
                (true, _) => Some(Account::Prepaid),
                (false, Some(l)) => Some(Account::Postpaid {
                    credit_limit: amount("--credit-limit", &l)?,
                }),
                (false, None) => None,
            };
            let patch = SubscriberPatch {
                name: f.name,
                email: f.email,
                time_zone: f.time_zone.as_deref().map(parse_time_zone).transpose()?,
                plan: f.plan,
                account,
                daily_spend_cap: clearable(f.daily_cap.as_deref(), |v| amount("--daily-cap", v))?,
                monthly_spend_cap: clearable(f.monthly_cap.as_deref(), |v| {
                    amount("--monthly-cap", v)
                })?,
                max_concurrent_calls: clearable(f.max_calls.as_deref(), |v| {
                    v.parse::<u32>()
                        .with_context(|| format!("--max-calls {v:?}"))
                })?,
            };
            if patch.is_empty() {
                bail!("nothing to change: give at least one field");
            }
            print(&subscribers::update(conn, id, &patch, now)?)
        }
        SubscriberCmd::Suspend { id } => print(&subscribers::set_status(
            conn,
            id,
            SubscriberStatus::Suspended,
            now,
        )?),
        SubscriberCmd::Resume { id } => print(&subscribers::set_status(
            conn,
            id,
            SubscriberStatus::Active,
            now,
        )?),
        SubscriberCmd::Close { id } => print(&subscribers::set_status(
            conn,
            id,
            SubscriberStatus::Closed,
            now,
        )?),
    }
}

fn account(
    conn: &mut DbConnection,
    cmd: AccountCmd,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let (kind, args) = match cmd {
        AccountCmd::Payment(a) => (EntryKind::Payment, a),
        AccountCmd::Credit(a) => (EntryKind::Credit, a),
        AccountCmd::Adjust(a) => (EntryKind::Adjustment, a),
        AccountCmd::Show { subscriber, limit } => {
            let s = subscribers::get(conn, subscriber)?;
            return print(&serde_json::json!({
                "subscriber_id": subscriber,
                "currency": s.currency,
                "standing": ledger::standing(conn, &s, now)?,
                "entries": ledger::entries(conn, subscriber, None, limit.clamp(1, 10_000))?,
            }));
        }
    };
    let amount = forwarder::amount::parse_signed(&args.amount)
        .with_context(|| format!("amount {:?}", args.amount))?;
    let new = NewEntry {
        kind,
        amount,
        reason: args.reason,
        idempotency_key: args.key,
    };
    let recorded = ledger::record(conn, args.subscriber, &new, now)?;
    let balance = ledger::balance(conn, args.subscriber)?;
    print(&serde_json::json!({
        "recorded": if recorded.is_new() { "new" } else { "already recorded" },
        "entry": recorded.entry(),
        "balance": balance,
    }))
}

fn read_rules(path: &Path) -> Result<RuleSet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let toml_file = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let set: RuleSet = if toml_file {
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?
    } else {
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?
    };
    Ok(set)
}
