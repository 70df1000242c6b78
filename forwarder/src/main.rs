//! The home provider's forwarder: forwards a subscriber's calls through the
//! best provider and bills them. Not built yet; this binary only says so.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "The home provider's forwarder (not built yet: see \"What works today\" in the README)"
)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("forwarder: not built yet");
    ExitCode::from(2)
}
