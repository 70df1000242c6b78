//! The forwarder daemon (not built yet).
fn main() {
    eprintln!("forwarder: not implemented yet");
    std::process::exit(2);
}
